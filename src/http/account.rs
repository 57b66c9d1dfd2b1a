//! `GET /api/me` and `GET /api/me/ledger`.

use super::{authenticate, id_cursor, json_response, page_limit, paginate, Ctx};
use crate::domain::error::AppResult;
use crate::domain::time::rfc3339;
use crate::edge::store::{self, UserRow};
use serde_json::{json, Value};
use worker::{Request, Response};

/// `GET /api/models`: every model with its current price and limits, so
/// clients never carry a copy that can drift from this deployment.
pub fn models(ctx: &Ctx) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let models: Vec<Value> = crate::domain::model::MODELS
        .iter()
        .map(|m| {
            json!({ "name": m.name, "price": cfg.price(m.name), "max_prompt_chars": m.max_prompt_chars,
                    "min_images": m.min_images, "max_images": m.max_images,
                    "max_image_bytes": m.max_image_bytes.min(cfg.max_upload_bytes),
                    "aspect_ratios": m.aspect_ratios, "default_aspect_ratio": m.default_aspect_ratio,
                    "resolutions": m.resolutions, "output_formats": m.formats, "default_output_format": m.default_format,
                    "image_types": ["image/jpeg", "image/png", "image/webp"] })
        })
        .collect();
    let resp = json_response(200, &json!({ "models": models, "max_body_bytes": cfg.max_body_bytes }))?;
    let _ = resp.headers().set("Cache-Control", "public, max-age=60");
    Ok(resp)
}

pub fn user_view(u: &UserRow) -> Value {
    json!({ "id": u.id, "name": u.name, "credits": u.credits, "created_at": rfc3339(u.created_at) })
}

pub async fn me(ctx: &Ctx, req: &Request) -> AppResult<Response> {
    ctx.config()?;
    let db = ctx.db()?;
    let user = authenticate(ctx, req, &db).await?;
    json_response(200, &json!({ "user": user_view(&user) }))
}

pub async fn ledger_page(ctx: &Ctx, db: &crate::edge::db::Db, user_id: &str) -> AppResult<Value> {
    let limit = page_limit(ctx)?;
    let rows = store::ledger(db, user_id, limit + 1, id_cursor(ctx)?).await?;
    let (page, next_cursor) = paginate(rows, limit, |r| r.id.to_string());
    let entries: Vec<Value> = page
        .iter()
        .map(|r| {
            json!({ "id": r.id, "kind": r.kind, "amount": r.amount, "balance_after": r.balance_after, "task_id": r.task_id,
                    "reason": r.reason, "actor": r.actor, "created_at": rfc3339(r.created_at) })
        })
        .collect();
    Ok(json!({ "entries": entries, "next_cursor": next_cursor }))
}

pub async fn ledger(ctx: &Ctx, req: &Request) -> AppResult<Response> {
    ctx.config()?;
    let db = ctx.db()?;
    let user = authenticate(ctx, req, &db).await?;
    json_response(200, &ledger_page(ctx, &db, &user.id).await?)
}

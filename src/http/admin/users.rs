//! The operator's user endpoints: create (the key is shown this once), list,
//! look up, ledger, grant or take credits, issue a new key.

use super::super::account::{ledger_page, user_view};
use super::super::extract::{decode_cursor, encode_cursor, page_limit, paginate, read_json};
use super::super::json_response;
use super::super::request::Request;
use super::super::response::Response;
use super::{credits_field, open, path_id, text_field, Ctx, MAX_ADMIN_BODY};
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::store::users;
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::UserId;
use crate::domain::signature::{api_key_hash, new_api_key};
use serde_json::json;

/// `POST /api/admin/users {"name", "credits"}`.
pub async fn create(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let body = read_json(&req, MAX_ADMIN_BODY).await?;
    let name = text_field(&body, "name", 100)?;
    let credits = credits_field(&body, "credits", false)?;
    let id = UserId::new(&random_bytes::<16>()?);
    let key = new_api_key(&random_bytes::<32>()?);
    users::create(&db, &id, &name, credits, &api_key_hash(&key), now_ms()).await?;
    ctx.log.info("admin.user_created", "user created", json!({ "target_user": id, "credits": credits }));
    let user = users::by_id(&db, &id).await?.ok_or_else(|| AppError::internal("user vanished"))?;
    json_response(201, &json!({ "user": user_view(&user), "api_key": key }))
}

/// `GET /api/admin/users`, newest first.
pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let limit = page_limit(ctx)?;
    let rows = users::list(&db, limit + 1, decode_cursor(ctx)?).await?;
    let (page, next) = paginate(rows, limit, |u| encode_cursor(u.created_at, u.id.as_str()));
    json_response(200, &json!({ "users": page.iter().map(user_view).collect::<Vec<_>>(), "next_cursor": next }))
}

/// `GET /api/admin/users/:id`.
pub async fn get(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let id = path_id(ctx, UserId::parse)?;
    let user = users::by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
    json_response(200, &json!({ "user": user_view(&user) }))
}

/// `GET /api/admin/users/:id/ledger`.
pub async fn ledger(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let id = path_id(ctx, UserId::parse)?;
    users::by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
    json_response(200, &ledger_page(ctx, &db, &id).await?)
}

/// `POST /api/admin/users/:id/credits {"amount", "reason"}`: a grant or an
/// adjustment, never below zero.
pub async fn credits(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let id = path_id(ctx, UserId::parse)?;
    let body = read_json(&req, MAX_ADMIN_BODY).await?;
    let amount = credits_field(&body, "amount", true)?;
    if amount == 0 {
        return Err(AppError::validation("amount", "'amount' must not be zero."));
    }
    let reason = text_field(&body, "reason", 200)?;
    let user = users::by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
    let Some(balance) = users::adjust_credits(&db, &id, amount, &reason, now_ms()).await? else {
        return Err(AppError::validation("amount", format!("The balance is {}; it cannot go below zero.", user.credits))
            .with_details(json!({ "field": "amount", "balance": user.credits })));
    };
    ctx.log.info("admin.credits", "credits changed by the operator", json!({ "target_user": id, "amount": amount, "balance": balance }));
    json_response(200, &json!({ "user": user_view(&users::User { credits: balance, ..user }) }))
}

/// `POST /api/admin/users/:id/keys`: a new key; the old ones stop working.
pub async fn rotate_key(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let id = path_id(ctx, UserId::parse)?;
    let key = new_api_key(&random_bytes::<32>()?);
    if !users::rotate_key(&db, &id, &api_key_hash(&key), now_ms()).await? {
        return Err(AppError::not_found());
    }
    ctx.log.info("admin.key_rotated", "user key rotated; old keys revoked", json!({ "target_user": id }));
    json_response(201, &json!({ "user_id": id, "api_key": key }))
}

//! `GET /api/me` and `GET /api/me/ledger`: the key owner's balance and every
//! credit movement.

use super::ctx::Ctx;
use super::extract::{id_cursor, page_limit, paginate};
use super::request::Request;
use super::response::Response;
use super::{auth, json_response};
use crate::adapters::d1::Db;
use crate::adapters::store::users::{self, User};
use crate::domain::error::AppResult;
use crate::domain::ids::UserId;
use crate::domain::time::rfc3339;
use serde_json::{json, Value};

pub fn user_view(u: &User) -> Value {
    json!({ "id": u.id, "name": u.name, "credits": u.credits, "owed": u.owed, "created_at": rfc3339(u.created_at) })
}

pub async fn me(ctx: &Ctx, req: Request) -> AppResult<Response> {
    ctx.config()?;
    let user = auth::user(ctx, &req, &ctx.db()?).await?;
    json_response(200, &json!({ "user": user_view(&user) }))
}

pub async fn ledger(ctx: &Ctx, req: Request) -> AppResult<Response> {
    ctx.config()?;
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    json_response(200, &ledger_page(ctx, &db, &user.id).await?)
}

/// One page of a user's ledger (also the admin view of it).
pub async fn ledger_page(ctx: &Ctx, db: &Db, user_id: &UserId) -> AppResult<Value> {
    let limit = page_limit(ctx)?;
    let rows = users::ledger(db, user_id, limit + 1, id_cursor(ctx)?).await?;
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

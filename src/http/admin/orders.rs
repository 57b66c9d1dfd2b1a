//! The operator's view of purchases: every order with its state and what
//! refunds and disputes took back, and clearing what a user owes.

use super::super::account::user_view;
use super::super::extract::{decode_cursor, encode_cursor, page_limit, paginate, read_json};
use super::super::json_response;
use super::super::request::Request;
use super::super::response::Response;
use super::{open, path_id, text_field, Ctx, MAX_ADMIN_BODY};
use crate::adapters::clock::now_ms;
use crate::adapters::store::{orders, users};
use crate::domain::billing::OrderState;
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::UserId;
use serde_json::json;

/// `GET /api/admin/orders?state=&user_id=&owed=true&limit=&cursor=`, newest first.
pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let limit = page_limit(ctx)?;
    let state = OrderState::parse_filter(ctx.query("state"))?;
    let user = match ctx.query("user_id").filter(|u| !u.is_empty()) {
        Some(u) => Some(UserId::parse(u).ok_or_else(|| AppError::validation("user_id", "Not a user id."))?),
        None => None,
    };
    let owed_only = ctx.query("owed") == Some("true");
    let rows = orders::list(&db, user.as_ref(), state, owed_only, limit + 1, decode_cursor(ctx)?).await?;
    let (page, next) = paginate(rows, limit, |o| encode_cursor(o.created_at, o.id.as_str()));
    json_response(200, &json!({ "orders": page.iter().map(|o| o.view(true)).collect::<Vec<_>>(), "next_cursor": next }))
}

/// `POST /api/admin/users/:id/clear-owed {"reason"}`: forgives what the user
/// owes, so they can create again; a zero-amount ledger row and an audit
/// entry record it. To collect instead, take the credits first with
/// `POST /api/admin/users/:id/credits` (a negative amount), then clear.
pub async fn clear_owed(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let id = path_id(ctx, UserId::parse)?;
    let body = read_json(&req, MAX_ADMIN_BODY).await?;
    let reason = text_field(&body, "reason", 200)?;
    users::by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
    let cleared = orders::clear_owed(&db, &id, &reason, now_ms()).await?;
    ctx.log.info("admin.owed_cleared", "owed credits cleared by the operator", json!({ "target_user": id, "cleared": cleared }));
    let user = users::by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
    json_response(200, &json!({ "user": user_view(&user), "cleared": cleared }))
}

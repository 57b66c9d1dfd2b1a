//! `GET /api/admin/audit?target=`: operator actions, newest first.

use super::super::extract::{id_cursor, page_limit, paginate};
use super::super::json_response;
use super::super::request::Request;
use super::super::response::Response;
use super::{open, Ctx};
use crate::adapters::store::ops;
use crate::domain::error::AppResult;
use crate::domain::time::rfc3339;
use serde_json::{json, Value};

pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (_, db) = open(ctx, &req).await?;
    let limit = page_limit(ctx)?;
    let rows = ops::audit_log(&db, ctx.query("target"), limit + 1, id_cursor(ctx)?).await?;
    let (page, next) = paginate(rows, limit, |r| r.id.to_string());
    let entries: Vec<Value> = page
        .iter()
        .map(|r| {
            json!({ "id": r.id, "actor": r.actor, "action": r.action, "target": r.target, "detail": r.detail,
                    "created_at": rfc3339(r.created_at) })
        })
        .collect();
    json_response(200, &json!({ "entries": entries, "next_cursor": next }))
}

//! The operator's task endpoints: every user's tasks (or the stuck ones) and
//! a recheck with Kie that never submits anything new.

use super::super::extract::{decode_cursor, encode_cursor, page_limit, paginate};
use super::super::json_response;
use super::super::request::Request;
use super::super::response::Response;
use super::{open, path_id, Ctx};
use crate::adapters::clock::now_ms;
use crate::adapters::store::{ops, tasks};
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::{TaskId, UserId};
use crate::domain::task::TaskState;
use serde_json::{json, Value};

/// `GET /api/admin/tasks?state=&user_id=&stuck=true`.
pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (cfg, db) = open(ctx, &req).await?;
    let limit = page_limit(ctx)?;
    let state = TaskState::parse_filter(ctx.query("state"))?;
    let user = match ctx.query("user_id").filter(|u| !u.is_empty()) {
        Some(u) => Some(UserId::parse(u).ok_or_else(|| AppError::validation("user_id", "Not a user id."))?),
        None => None,
    };
    let rows = if ctx.query("stuck") == Some("true") {
        tasks::stuck(&db, now_ms() - cfg.task_deadline_s * 1000, limit).await?
    } else {
        tasks::list(&db, user.as_ref(), state, limit + 1, decode_cursor(ctx)?).await?
    };
    let (page, next) = paginate(rows, limit, |t| encode_cursor(t.created_at, t.id.as_str()));
    let sign = ctx.result_url(&cfg);
    let views: Vec<Value> = page
        .iter()
        .map(|t| {
            let mut v = t.view(&sign);
            if let Some(o) = v.as_object_mut() {
                o.insert("user_id".into(), json!(t.user_id));
                o.insert("attempts".into(), json!(t.attempts));
            }
            v
        })
        .collect();
    json_response(200, &json!({ "tasks": views, "next_cursor": next }))
}

/// `POST /api/admin/tasks/:id/recheck`: asks Kie now and applies the answer.
pub async fn recheck(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let (cfg, db) = open(ctx, &req).await?;
    let id = path_id(ctx, TaskId::parse)?;
    ctx.log.set("task_id", id.as_str());
    let task = tasks::by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
    let before = task.state;
    if task.provider_task_id.is_some() && !task.state.is_terminal() {
        ctx.pipeline()?.refresh(&task).await?;
    }
    let after = tasks::existing(&db, &id).await?;
    ops::audit(&db, "task.recheck", id.as_str(), &format!("{} -> {}", before.as_str(), after.state.as_str()), now_ms()).await?;
    json_response(200, &json!({ "task": after.view(&ctx.result_url(&cfg)), "previous_state": before.as_str() }))
}

//! `GET /api/tasks/:id` (with the polling fallback) and `GET /api/tasks`.

use super::{authenticate, decode_cursor, encode_cursor, json_response, page_limit, paginate, user_key_hash, Ctx};
use crate::domain::error::{AppError, AppResult};
use crate::domain::task::TaskState;
use crate::edge::store;
use crate::pipeline::now_ms;
use serde_json::json;
use worker::{Request, Response};

pub async fn get(ctx: &Ctx, req: &Request, id: &str) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let pipeline = ctx.pipeline()?;
    let db = &pipeline.db;
    let hash = user_key_hash(req)?;
    ctx.log.set("task_id", id);
    // One indexed query authenticates and reads the task.
    let mut task = match store::task_for_key(db, &hash, id).await? {
        Some(t) => t,
        None => {
            // Tell a bad key (401) from a task that is missing or not yours (404).
            authenticate(ctx, req, db).await?;
            return Err(AppError::not_found());
        }
    };
    ctx.log.set("user_id", &task.user_id);
    if let Some(p) = &task.provider_task_id {
        ctx.log.set("provider_task_id", p);
    }
    let state = task.state();
    if !state.is_terminal() {
        let now = now_ms();
        let refreshed = if state == TaskState::Queued {
            pipeline.submit(&task).await.map(|_| true)?
        } else {
            store::claim_refresh(db, &task.id, now, cfg.poll_interval_s * 1000, false).await? && {
                pipeline.refresh(&task).await?;
                true
            }
        };
        if refreshed {
            task = store::task_by_id(db, id).await?.ok_or_else(AppError::not_found)?;
        }
    }
    let view = task.view(&ctx.result_url(&cfg));
    json_response(200, &json!({ "task": view }))
}

pub async fn list(ctx: &Ctx, req: &Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let db = ctx.db()?;
    let user = authenticate(ctx, req, &db).await?;
    let limit = page_limit(ctx)?;
    let state = match ctx.query("state").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            AppError::validation_allowed("state", "Unknown state.", &["queued", "submitted", "generating", "succeeded", "failed"])
        })?),
    };
    let cursor = decode_cursor(ctx)?;
    let tasks = store::list_tasks(&db, Some(&user.id), state.map(|s| s.as_str()), limit + 1, cursor).await?;
    let (page, next_cursor) = paginate(tasks, limit, |t| encode_cursor(t.created_at, &t.id));
    let sign = ctx.result_url(&cfg);
    let views: Vec<_> = page.iter().map(|t| t.view(&sign)).collect();
    json_response(200, &json!({ "tasks": views, "next_cursor": next_cursor }))
}

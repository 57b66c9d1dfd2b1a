//! `GET /api/tasks/:id` (with the polling fallback) and `GET /api/tasks`.

use super::auth::{self, Credential};
use super::ctx::Ctx;
use super::extract::{decode_cursor, encode_cursor, page_limit, paginate};
use super::json_response;
use super::request::Request;
use super::response::Response;
use crate::adapters::clock::now_ms;
use crate::adapters::store::tasks;
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::TaskId;
use crate::domain::task::{Task, TaskState};
use crate::pipeline::Pipeline;
use serde_json::json;

pub async fn get(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let pipeline = ctx.pipeline()?;
    let task = read_own_task(ctx, &req, &pipeline).await?;
    let task = refresh_if_due(&pipeline, task, cfg.poll_interval_s * 1000).await?;
    json_response(200, &json!({ "task": task.view(&ctx.result_url(&cfg)) }))
}

/// The caller's task, read and authenticated by one indexed query (by key or
/// by session); a bad credential is 401, a task that is missing or someone
/// else's is 404.
async fn read_own_task(ctx: &Ctx, req: &Request, pipeline: &Pipeline) -> AppResult<Task> {
    let credential = auth::credential(ctx, req)?;
    let found = match TaskId::parse(ctx.param("id")) {
        Some(id) => {
            ctx.log.set("task_id", id.as_str());
            match &credential {
                Credential::Key(hash) => tasks::for_key(&pipeline.db, hash, &id).await?,
                Credential::Session(hash) => tasks::for_session(&pipeline.db, hash, &id, now_ms()).await?,
            }
        }
        None => None,
    };
    let Some(task) = found else {
        auth::user(ctx, req, &pipeline.db).await?;
        return Err(AppError::not_found());
    };
    ctx.log.set("user_id", task.user_id.as_str());
    if let Some(p) = &task.provider_task_id {
        ctx.log.set("provider_task_id", p.as_str());
    }
    Ok(task)
}

/// The polling fallback: an unfinished task is submitted (queued) or asked
/// about at Kie, at most once per `interval_ms` however many clients poll.
async fn refresh_if_due(pipeline: &Pipeline, task: Task, interval_ms: i64) -> AppResult<Task> {
    let refreshed = match task.state {
        s if s.is_terminal() => false,
        TaskState::Queued => {
            pipeline.submit(&task).await?;
            true
        }
        _ if tasks::claim_refresh(&pipeline.db, &task.id, now_ms(), interval_ms, false).await? => {
            pipeline.refresh(&task).await?;
            true
        }
        _ => false,
    };
    if refreshed {
        tasks::existing(&pipeline.db, &task.id).await
    } else {
        Ok(task)
    }
}

pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    let limit = page_limit(ctx)?;
    let state = TaskState::parse_filter(ctx.query("state"))?;
    let rows = tasks::list(&db, Some(&user.id), state, limit + 1, decode_cursor(ctx)?).await?;
    let (page, next_cursor) = paginate(rows, limit, |t| encode_cursor(t.created_at, t.id.as_str()));
    let sign = ctx.result_url(&cfg);
    let views: Vec<_> = page.iter().map(|t| t.view(&sign)).collect();
    json_response(200, &json!({ "tasks": views, "next_cursor": next_cursor }))
}

//! `POST /api/webhooks/kie-image`: Kie's callbacks in every shape. The body is
//! unsigned, so it is only a hint: we authenticate it (HMAC when configured, the
//! per-task token always), answer at once, and confirm the state with Kie in
//! the background.

use super::ctx::Ctx;
use super::extract::read_body;
use super::json_response;
use super::request::Request;
use super::response::Response;
use crate::adapters::clock::now_ms;
use crate::adapters::metrics;
use crate::adapters::store::tasks::{self, CallbackTarget};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::ids::TaskId;
use crate::domain::kie::{parse_callback, KieCallback};
use crate::domain::signature::{ct_eq, verify_kie_webhook};
use crate::pipeline::Pipeline;
use serde_json::json;
use std::time::Duration;
use worker::Delay;

const MAX_CALLBACK_BYTES: u64 = 256 * 1024;
const HMAC_WINDOW_S: i64 = 300;
/// Duplicate callbacks within this window share one confirmation call to Kie.
const CONFIRM_INTERVAL_MS: i64 = 1_000;

pub async fn receive(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let pipeline = ctx.pipeline()?;
    let callback = read_callback(ctx, &req).await?;
    if let Some(key) = &cfg.kie_webhook_hmac_key {
        check_signature(&req, key, &callback).map_err(metrics::callback_rejected)?;
    }
    let Some(task) = find_task(ctx, &pipeline, &callback).await? else {
        ctx.log.warn("callback.unknown_task", "callback for a task we do not know", json!({ "shape": callback.shape }));
        return json_response(200, &json!({ "ok": true, "ignored": "unknown_task" }));
    };
    ctx.log.set("task_id", task.id.as_str());
    ctx.log.set("user_id", task.user_id.as_str());
    check_task_token(ctx, &task, &callback).map_err(metrics::callback_rejected)?;
    ctx.log.info(
        "callback.received",
        "Kie callback received",
        json!({ "shape": callback.shape, "hint": callback.hint.as_ref().map_or("none", |h| h.name()), "task_state": task.state.as_str() }),
    );
    if task.state.is_terminal() {
        return json_response(200, &json!({ "ok": true, "state": task.state.as_str() }));
    }
    ctx.in_background("confirm_callback", confirm(pipeline.until(ctx.background_deadline()), task.id));
    json_response(200, &json!({ "ok": true }))
}

async fn read_callback(ctx: &Ctx, req: &Request) -> AppResult<KieCallback> {
    let body = read_body(req, MAX_CALLBACK_BYTES).await?;
    let callback = parse_callback(&body).ok_or_else(|| AppError::new(ErrorCode::InvalidJson, "The callback body is not a JSON object."))?;
    if let Some(p) = &callback.provider_task_id {
        ctx.log.set("provider_task_id", p.as_str());
    }
    Ok(callback)
}

/// Kie's HMAC over the body's task id and the timestamp header.
fn check_signature(req: &Request, key: &str, callback: &KieCallback) -> AppResult<()> {
    let (ts, sig) = (req.header("X-Webhook-Timestamp"), req.header("X-Webhook-Signature"));
    let task_id = callback.provider_task_id.as_ref().map(|p| p.as_str());
    verify_kie_webhook(key, task_id, ts.as_deref(), sig.as_deref(), now_ms() / 1000, HMAC_WINDOW_S)
        .map_err(|why| AppError::unauthorized("The callback signature is not valid.").with_internal(why.reason()))
}

/// The task named by our callback URL (`?task=`), else by Kie's task id.
async fn find_task(ctx: &Ctx, pipeline: &Pipeline, callback: &KieCallback) -> AppResult<Option<CallbackTarget>> {
    match (ctx.query("task"), &callback.provider_task_id) {
        (Some(id), _) => match TaskId::parse(id) {
            Some(id) => tasks::callback_target(&pipeline.db, &id).await,
            None => Ok(None),
        },
        (None, Some(p)) => tasks::callback_target_by_provider_id(&pipeline.db, p).await,
        (None, None) => Ok(None),
    }
}

/// The per-task token we put into the callback URL, and Kie's id must be the task's.
fn check_task_token(ctx: &Ctx, task: &CallbackTarget, callback: &KieCallback) -> AppResult<()> {
    let token_ok = ctx.query("token").is_some_and(|t| ct_eq(t.as_bytes(), task.callback_token.as_bytes()));
    let same_task = match (&callback.provider_task_id, &task.provider_task_id) {
        (Some(from_body), Some(ours)) => from_body == ours,
        _ => true,
    };
    match (token_ok, same_task) {
        (true, true) => Ok(()),
        (false, _) => {
            Err(AppError::unauthorized("This callback is not authorised for that task.").with_internal("missing or wrong task token"))
        }
        (true, false) => Err(AppError::unauthorized("This callback is not authorised for that task.")
            .with_internal("callback taskId belongs to another task")),
    }
}

/// Asks Kie for the real state (once per second at most, however many
/// duplicates arrive) and applies it.
async fn confirm(p: Pipeline, task_id: TaskId) -> AppResult<()> {
    for attempt in 0..3 {
        if tasks::claim_refresh(&p.db, &task_id, now_ms(), CONFIRM_INTERVAL_MS, true).await? {
            if let Some(task) = tasks::by_id(&p.db, &task_id).await? {
                p.refresh(&task).await?;
            }
            return Ok(());
        }
        // Another refresh just ran (or the task is queued/finished): look again shortly.
        match tasks::by_id(&p.db, &task_id).await? {
            Some(t) if t.state.is_terminal() => return Ok(()),
            Some(t) if t.provider_task_id.is_none() && attempt == 2 => return Ok(()),
            _ => {}
        }
        Delay::from(Duration::from_millis(1_100)).await;
    }
    Ok(())
}

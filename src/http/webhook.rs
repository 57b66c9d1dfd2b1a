//! `POST /api/webhooks/kie-image`: Kie's callbacks in every shape. The body is
//! unsigned, so it is only a hint: we authenticate it (HMAC when configured, the
//! per-task token always), answer at once, and confirm the state with Kie in
//! the background.

use super::{check_length, json_response, Ctx};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::kie::{parse_callback, ProviderStatus};
use crate::domain::signature::{ct_eq, verify_kie_webhook};
use crate::edge::store;
use crate::pipeline::{now_ms, Pipeline};
use serde_json::json;
use std::time::Duration;
use worker::{Delay, Request, Response};

const MAX_CALLBACK_BYTES: u64 = 256 * 1024;
const HMAC_WINDOW_S: i64 = 300;
/// Duplicate callbacks within this window share one confirmation call to Kie.
const CONFIRM_INTERVAL_MS: i64 = 1_000;

fn hint_name(h: &Option<ProviderStatus>) -> &'static str {
    match h {
        Some(ProviderStatus::Waiting) => "waiting",
        Some(ProviderStatus::Generating) => "generating",
        Some(ProviderStatus::Succeeded { .. }) => "success",
        Some(ProviderStatus::Failed { .. }) => "fail",
        None => "none",
    }
}

pub async fn receive(ctx: &Ctx, mut req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let pipeline = ctx.pipeline()?;
    check_length(&req, MAX_CALLBACK_BYTES)?;
    let body = req.bytes().await.map_err(|e| AppError::invalid_request("Could not read the callback body.").with_internal(e.to_string()))?;
    if body.len() as u64 > MAX_CALLBACK_BYTES {
        return Err(super::too_large(MAX_CALLBACK_BYTES));
    }
    let callback = parse_callback(&body).ok_or_else(|| AppError::new(ErrorCode::InvalidJson, "The callback body is not a JSON object."))?;
    let provider_id = callback.provider_task_id.clone();
    if let Some(p) = &provider_id {
        ctx.log.set("provider_task_id", p);
    }

    if let Some(key) = &cfg.kie_webhook_hmac_key {
        let header = |n: &str| req.headers().get(n).ok().flatten();
        let (ts, sig) = (header("X-Webhook-Timestamp"), header("X-Webhook-Signature"));
        if let Err(why) = verify_kie_webhook(key, provider_id.as_deref(), ts.as_deref(), sig.as_deref(), now_ms() / 1000, HMAC_WINDOW_S) {
            return Err(AppError::unauthorized("The callback signature is not valid.").with_internal(why.reason()));
        }
    }

    let task = match (ctx.query("task"), &provider_id) {
        (Some(id), _) => store::task_by_id(&pipeline.db, id).await?,
        (None, Some(p)) => store::task_by_provider_id(&pipeline.db, p).await?,
        (None, None) => None,
    };
    let Some(task) = task else {
        ctx.log.warn("callback.unknown_task", "callback for a task we do not know", json!({ "shape": callback.shape }));
        return json_response(200, &json!({ "ok": true, "ignored": "unknown_task" }));
    };
    ctx.log.set("task_id", &task.id);
    ctx.log.set("user_id", &task.user_id);

    let token_ok = ctx.query("token").is_some_and(|t| ct_eq(t.as_bytes(), task.callback_token.as_bytes()));
    let same_task = match (&provider_id, &task.provider_task_id) {
        (Some(from_body), Some(ours)) => from_body == ours,
        _ => true,
    };
    if !token_ok || !same_task {
        let why = if token_ok { "callback taskId belongs to another task" } else { "missing or wrong task token" };
        return Err(AppError::unauthorized("This callback is not authorised for that task.").with_internal(why));
    }

    ctx.log.info(
        "callback.received",
        "Kie callback received",
        json!({ "shape": callback.shape, "hint": hint_name(&callback.hint), "task_state": task.state }),
    );
    if task.state().is_terminal() {
        return json_response(200, &json!({ "ok": true, "state": task.state }));
    }
    let p = pipeline.clone();
    let task_id = task.id.clone();
    ctx.in_background(async move { confirm(p, task_id).await });
    json_response(200, &json!({ "ok": true }))
}

/// Asks Kie for the real state (once per second at most, however many
/// duplicates arrive) and applies it.
async fn confirm(p: Pipeline, task_id: String) {
    for attempt in 0..3 {
        let now = now_ms();
        match store::claim_refresh(&p.db, &task_id, now, CONFIRM_INTERVAL_MS, true).await {
            Ok(true) => {
                if let Ok(Some(task)) = store::task_by_id(&p.db, &task_id).await {
                    if let Err(e) = p.refresh(&task).await {
                        p.log.error("callback.confirm_failed", "could not apply the callback", json!({ "task_id": task_id, "cause": e.internal }));
                    }
                }
                // The request line was written before this work: account for it here.
                let (d1_queries, d1_rows_read, d1_rows_written, kie_calls) = p.log.counters();
                p.log.info(
                    "callback.confirmed",
                    "callback confirmed with Kie",
                    json!({ "task_id": task_id, "d1_queries": d1_queries, "d1_rows_read": d1_rows_read,
                            "d1_rows_written": d1_rows_written, "kie_calls": kie_calls }),
                );
                return;
            }
            Ok(false) => {
                // Another refresh just ran (or the task is queued/finished): look again shortly.
                match store::task_by_id(&p.db, &task_id).await {
                    Ok(Some(t)) if t.state().is_terminal() => return,
                    Ok(Some(t)) if t.provider_task_id.is_none() && attempt == 2 => return,
                    _ => {}
                }
                Delay::from(Duration::from_millis(1_100)).await;
            }
            Err(_) => return,
        }
    }
}

//! The operator dashboard's data: `GET /api/admin/alerts` (open and recent
//! alerts) and `GET /api/admin/metrics?window=24h|7d` (aggregates from
//! indexed D1 reads; the request's log line carries their cost). Like
//! diagnose, both need only the operator token, so the dashboard still works
//! when other settings are broken.

use super::super::json_response;
use super::super::request::Request;
use super::super::response::Response;
use super::{operator, Ctx};
use crate::adapters::clock::now_ms;
use crate::adapters::metrics;
use crate::adapters::settings::setting;
use crate::adapters::store::monitoring::{self as store, AlertRow};
use crate::domain::error::{AppError, AppResult};
use crate::domain::monitor::alerts::title;
use crate::domain::monitor::config::MonitorConfig;
use crate::domain::monitor::metrics::{build, sample_bucket_ms, Inputs, QueueNow, Window};
use crate::domain::time::rfc3339;
use serde_json::{json, Value};

/// Resolved alerts are listed for this long.
const RECENT_MS: i64 = 7 * 86_400_000;
const MAX_ALERTS: u32 = 100;

fn alert_view(a: &AlertRow) -> Value {
    json!({
        "id": a.id,
        "condition": a.condition,
        "title": title(&a.condition),
        "state": a.state,
        "started_at": rfc3339(a.started_at),
        "resolved_at": a.resolved_at.map(rfc3339),
        "message": a.message,
        "resolved_message": a.resolved_message,
        "delivery": {
            "start_sent_at": a.start_sent_at.map(rfc3339),
            "end_sent_at": a.end_sent_at.map(rfc3339),
            "attempts": a.attempts,
            "last_error": a.last_error,
        },
    })
}

/// `GET /api/admin/alerts`: open alerts first, then those of the last 7 days.
pub async fn alerts(ctx: &Ctx, req: Request) -> AppResult<Response> {
    operator(ctx, &req).await?;
    let db = ctx.db()?;
    let rows = store::list_alerts(&db, now_ms() - RECENT_MS, MAX_ALERTS).await?;
    let open = rows.iter().filter(|a| a.state == "open").count();
    json_response(200, &json!({ "alerts": rows.iter().map(alert_view).collect::<Vec<_>>(), "open": open }))
}

/// `GET /api/admin/metrics?window=24h|7d`.
pub async fn metrics(ctx: &Ctx, req: Request) -> AppResult<Response> {
    operator(ctx, &req).await?;
    let window = Window::parse(ctx.query("window"))
        .ok_or_else(|| AppError::validation_allowed("window", "Choose a window of 24h or 7d.", &Window::NAMES))?;
    let db = ctx.db()?;
    metrics::flush(&db, &ctx.log).await; // this isolate's latest counters first
    let now = now_ms();
    let from = now - window.span_ms();
    let first_bar = window.first_bucket(now);
    let tasks = store::task_rows(&db, first_bar).await?;
    let kie = store::kie_rows(&db, first_bar).await?;
    let sample_bucket = sample_bucket_ms(window, store::first_sample_since(&db, from).await?, now);
    let samples = store::samples(&db, from, sample_bucket).await?;
    let balances = store::balances(&db, from, sample_bucket).await?;
    let events = store::events_since(&db, from).await?;
    let q = store::queue_now(&db, now).await?;
    let queue =
        QueueNow { queued: q.queued, at_kie: q.at_kie, oldest_queued_s: q.oldest_queued_at.map(|t| (now - t) / 1000), overdue: q.overdue };
    let mut body = build(&Inputs {
        window,
        now,
        tasks: &tasks,
        kie: &kie,
        samples: &samples,
        balances: &balances,
        sample_bucket_ms: sample_bucket,
        events: &events,
        queue,
    });
    // What the balance is judged against (diagnose and the alerts use the same).
    let (monitor, _) = MonitorConfig::load(&|name| setting(&ctx.env, name));
    if let Some(o) = body.as_object_mut() {
        o.insert("environment".into(), json!(monitor.environment));
    }
    if let Some(kb) = body.get_mut("kie_balance").and_then(Value::as_object_mut) {
        kb.insert("warn_below".into(), json!(monitor.kie_balance_warn));
        kb.insert("cheapest_task".into(), json!(monitor.cheapest_kie_cost().map(|(m, c)| json!({ "model": m, "kie_credits": c }))));
    }
    ctx.log.info(
        "admin.metrics",
        "dashboard aggregates",
        json!({ "window": window.name(), "task_rows": tasks.len(), "kie_rows": kie.len(), "sample_points": samples.len(), "event_kinds": events.len() }),
    );
    json_response(200, &body)
}

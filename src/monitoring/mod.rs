//! The scheduled job's monitoring step, after the cron's own work (and even
//! when that failed): observe the service, open and resolve alerts, deliver
//! their messages, roll finished tasks up into the dashboard's counters, and
//! prune. Nothing on a request path waits for any of it.
//!
//! Per run: one free Kie credit call, one R2 `head`, about a dozen D1
//! statements, and at most a few alert deliveries (5 s each, stopping at the
//! first failure).

mod deliver;

use crate::adapters::cache::Cache;
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::d1::Db;
use crate::adapters::files::Files;
use crate::adapters::kie::KieClient;
use crate::adapters::log::Log;
use crate::adapters::metrics;
use crate::adapters::settings;
use crate::adapters::store::monitoring as store;
use crate::adapters::store::monitoring::AlertRow;
use crate::domain::error::{AppError, AppResult};
use crate::domain::monitor::alerts::{evaluate, resolved_message, step, undetermined, Condition, KieCheck, Observations, OpenAlert, Step};
use crate::domain::monitor::config::MonitorConfig;
use crate::domain::monitor::notify::{Notice, Sender};
use crate::domain::monitor::ALERT_WINDOW_MS;
use crate::domain::signature::base32;
use serde_json::{json, Value};
use worker::Env;

/// Finished tasks are rolled up this long after they finish, so a task whose
/// finishing write is still in flight is not missed; the dashboard reads the
/// most recent ones live.
const ROLLUP_LAG_MS: i64 = 2 * 60_000;
/// The credit call of the monitoring step waits at most this long.
const KIE_CHECK_TIMEOUT_MS: u64 = 10_000;
/// Where the step remembers (in KV) that it reported D1 unreadable.
const D1_DOWN_KEY: &str = "monitor:d1-unreadable";
const D1_DOWN_CONDITION: &str = "d1_unreadable";

pub const SERVICE: &str = "banana-worker";

/// Runs the monitoring step and logs one `monitor.run` (or `monitor.failed`) line.
pub async fn run(env: &Env, log: &Log) {
    let started = now_ms();
    let (cfg, _problems) = MonitorConfig::load(&|name| settings::setting(env, name));
    let dashboard = settings::setting(env, "PUBLIC_BASE_URL").map(|b| format!("{}/admin", b.trim().trim_end_matches('/')));
    let sender =
        Sender { service: SERVICE, environment: &cfg.environment, dashboard: dashboard.as_deref().filter(|d| d.starts_with("http")) };
    match observe_and_alert(env, log, &cfg, &sender).await {
        Ok(mut summary) => {
            d1_readable_again(env, log, &cfg, &sender).await;
            if let Some(o) = summary.as_object_mut() {
                o.insert("duration_ms".into(), json!(now_ms() - started));
            }
            log.info("monitor.run", "monitoring step finished", summary)
        }
        Err(e) => {
            log.error("monitor.failed", "monitoring step failed", json!({ "cause": e.internal, "reason": e.message }));
            if e.internal.as_deref().is_some_and(|c| c.starts_with("d1 ")) {
                d1_unreadable(env, log, &cfg, &sender, &e).await;
            }
        }
    }
}

async fn kie_check(env: &Env, log: &Log) -> (KieCheck, Vec<String>) {
    match settings::config(env) {
        Ok(c) => {
            let client = KieClient { base: &c.kie_api_base, api_key: &c.kie_api_key, timeout_ms: KIE_CHECK_TIMEOUT_MS, log };
            (KieCheck::from_credit_call(&client.credit_call().await), Vec::new())
        }
        Err(problems) => (KieCheck::NotChecked, problems.into_iter().map(|p| p.name).collect()),
    }
}

async fn r2_problem(env: &Env, log: &Log) -> Option<String> {
    match Files::from_env(env, log) {
        Err(_) => Some("no R2 binding named FILES".into()),
        Ok(files) => files.head("health").await.err().map(|e| e.internal.unwrap_or(e.message)),
    }
}

async fn observe_and_alert(env: &Env, log: &Log, cfg: &MonitorConfig, sender: &Sender<'_>) -> AppResult<Value> {
    let now = now_ms();
    let (kie, config_problems) = kie_check(env, log).await;
    let r2_problem = r2_problem(env, log).await;
    let db = Db::from_env(env, log)?;
    // This isolate's counters (the credit call above included) first, so the rules see them.
    metrics::flush(&db, log).await;
    let queue = store::queue_now(&db, now).await?;
    let outcomes = store::outcomes_since(&db, now - ALERT_WINDOW_MS).await?;
    let events = store::events_since(&db, now - ALERT_WINDOW_MS).await?;
    let balance = if let KieCheck::Balance(b) = kie { Some(b) } else { None };
    store::record_sample(&db, now, &queue, balance).await?;
    let rolled_up = store::rollup_tasks(&db, now - ROLLUP_LAG_MS).await?;

    let obs = Observations {
        now,
        config_problems,
        kie: Some(kie),
        outcomes,
        events: events.into_iter().map(|e| (e.kind, e.count)).collect(),
        queue: Some(queue),
        r2_problem,
    };
    let conditions = evaluate(&obs, cfg);
    let (opened, resolved) = apply(&db, log, cfg, &obs, &conditions).await?;
    let delivered = deliver::pending(&db, log, cfg, sender, now_ms()).await?;
    let pruned = store::prune(&db, now).await?;
    Ok(json!({
        "conditions": conditions.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        "opened": opened,
        "resolved": resolved,
        "sent": delivered.sent,
        "send_failed": delivered.failed,
        "kie_balance": balance,
        "queued": queue.queued,
        "rolled_up": rolled_up,
        "pruned": pruned,
    }))
}

fn open_state(a: &AlertRow) -> OpenAlert {
    OpenAlert { started_at: a.started_at, clear_since: a.clear_since }
}

/// Opens alerts for conditions that started, resolves those that have been
/// clear long enough. Returns (opened, resolved).
async fn apply(db: &Db, log: &Log, cfg: &MonitorConfig, obs: &Observations, conditions: &[Condition]) -> AppResult<(u32, u32)> {
    let open = store::open_alerts(db).await?;
    let now = obs.now;
    let (mut opened, mut resolved) = (0, 0);
    for c in conditions {
        let existing = open.iter().find(|a| a.condition == c.key);
        match (step(existing.map(open_state), true, now, cfg.resolve_after_s), existing) {
            (Step::Open, _) => {
                let id = format!("alr_{}", base32(&random_bytes::<10>()?));
                if store::open_alert(db, &id, &c.key, &c.message, now).await? {
                    opened += 1;
                    log.warn("alert.opened", &c.message, json!({ "alert_id": id, "condition": c.key }));
                }
            }
            (Step::Reactivate, Some(a)) => store::set_clear_since(db, &a.id, None).await?,
            _ => {}
        }
    }
    for a in open.iter().filter(|a| !conditions.iter().any(|c| c.key == a.condition)) {
        if undetermined(&a.condition, obs) {
            continue;
        }
        match step(Some(open_state(a)), false, now, cfg.resolve_after_s) {
            Step::StartClearing => store::set_clear_since(db, &a.id, Some(now)).await?,
            Step::Resolve => {
                let message = resolved_message(&a.condition, a.started_at, now, obs);
                if store::resolve_alert(db, &a.id, &message, now).await? {
                    resolved += 1;
                    log.info("alert.resolved", &message, json!({ "alert_id": a.id, "condition": a.condition }));
                }
            }
            _ => {}
        }
    }
    Ok((opened, resolved))
}

/// D1 cannot hold the state of an alert about D1 itself: KV remembers that
/// the message went out (at worst a duplicate, KV being eventually consistent).
async fn d1_unreadable(env: &Env, log: &Log, cfg: &MonitorConfig, sender: &Sender<'_>, e: &AppError) {
    let (Some(receiver), Ok(cache)) = (&cfg.receiver, Cache::from_env(env, log)) else { return };
    if cache.get(D1_DOWN_KEY).await.ok().flatten().is_some() {
        return;
    }
    let now = now_ms();
    let cause: String = e.internal.clone().unwrap_or_default().chars().take(200).collect();
    let message = format!(
        "D1 cannot be read: the scheduled job failed with \"{cause}\". Nothing can be created or finished until it can: check the D1 \
         binding and database_id of this environment and that the migrations are applied (GET /api/admin/diagnose)."
    );
    let notice = Notice {
        id: D1_DOWN_CONDITION,
        condition: D1_DOWN_CONDITION,
        state: "open",
        started_at: now,
        resolved_at: None,
        message: &message,
    };
    match deliver::send(log, receiver, sender, &notice).await {
        Ok(()) => {
            log.warn("alert.sent", &message, json!({ "condition": D1_DOWN_CONDITION, "message_kind": "start" }));
            if let Err(e) = cache.put(D1_DOWN_KEY, &now.to_string(), 30 * 86_400).await {
                log.warn("alert.state_failed", "could not remember the D1 alert in KV", json!({ "cause": e.internal }));
            }
        }
        Err(why) => log.warn(
            "alert.send_failed",
            "the alert receiver did not take the message",
            json!({ "condition": D1_DOWN_CONDITION, "cause": why }),
        ),
    }
}

async fn d1_readable_again(env: &Env, log: &Log, cfg: &MonitorConfig, sender: &Sender<'_>) {
    let (Some(receiver), Ok(cache)) = (&cfg.receiver, Cache::from_env(env, log)) else { return };
    let Some(started) = cache.get(D1_DOWN_KEY).await.ok().flatten().and_then(|v| v.parse::<i64>().ok()) else { return };
    let now = now_ms();
    let message = format!("D1 cannot be read — resolved after {}.", crate::domain::monitor::alerts::duration_words(now - started));
    let notice = Notice {
        id: D1_DOWN_CONDITION,
        condition: D1_DOWN_CONDITION,
        state: "resolved",
        started_at: started,
        resolved_at: Some(now),
        message: &message,
    };
    match deliver::send(log, receiver, sender, &notice).await {
        Ok(()) => {
            log.info("alert.sent", &message, json!({ "condition": D1_DOWN_CONDITION, "message_kind": "end" }));
            if let Err(e) = cache.delete(D1_DOWN_KEY).await {
                log.warn("alert.state_failed", "could not forget the D1 alert in KV", json!({ "cause": e.internal }));
            }
        }
        Err(why) => log.warn(
            "alert.send_failed",
            "the alert receiver did not take the message",
            json!({ "condition": D1_DOWN_CONDITION, "cause": why }),
        ),
    }
}

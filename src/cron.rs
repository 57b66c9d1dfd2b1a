//! The scheduled job (every minute): resubmit deferred tasks within Kie's
//! create window, refresh tasks that went quiet, fail (and refund) tasks past
//! their deadline. Every step is a conditional write, so two runs at once are
//! harmless.

use crate::domain::error::AppResult;
use crate::edge::db::Db;
use crate::edge::log::Log;
use crate::edge::store;
use crate::pipeline::{now_ms, Pipeline, Submission};
use serde_json::json;
use std::rc::Rc;
use std::time::Duration;
use worker::{Delay, Env};

/// How long one run keeps draining the queue (a minute-cron must end before the next).
const DRAIN_BUDGET_MS: i64 = 45_000;

pub async fn run(env: Env, cron: String) {
    let started = now_ms();
    let log = Log::new(&format!("cron-{started}"), "cron");
    let result = run_inner(&env, &log, started).await;
    let (queries, rows_read, rows_written, kie_calls) = log.counters();
    match result {
        Ok(summary) => log.info(
            "cron.run",
            "scheduled run finished",
            json!({ "cron": cron, "duration_ms": now_ms() - started, "summary": summary, "d1_queries": queries,
                    "d1_rows_read": rows_read, "d1_rows_written": rows_written, "kie_calls": kie_calls }),
        ),
        Err(e) => log.error("cron.failed", "scheduled run failed", json!({ "cron": cron, "cause": e.internal, "reason": e.message })),
    }
}

async fn run_inner(env: &Env, log: &Log, started: i64) -> AppResult<serde_json::Value> {
    let cfg = crate::edge::read_config(env).map_err(|p| {
        crate::domain::error::AppError::internal(format!("config problems: {:?}", p.iter().map(|p| &p.name).collect::<Vec<_>>()))
    })?;
    let d1 = env.d1("DB").map_err(|e| crate::domain::error::AppError::internal(format!("d1 binding: {e}")))?;
    let db = Db::new(d1, log.clone());
    let quiet_ms = cfg.refresh_quiet_s * 1000;
    let p = Pipeline { env: env.clone(), db: db.clone(), cfg: Rc::new(cfg), log: log.clone() };

    let (mut submitted, mut deferred, mut failed, mut refreshed) = (0u32, 0u32, 0u32, 0u32);
    // Refresh quiet or overdue tasks first: they are already paid for at Kie.
    for t in store::quiet_active(&db, now_ms(), quiet_ms, 50).await? {
        if let Some(task) = store::task_by_id(&db, &t.id).await? {
            if store::claim_refresh(&db, &task.id, now_ms(), quiet_ms / 2, false).await? || task.deadline_at.is_some_and(|d| d < now_ms()) {
                p.refresh(&task).await?;
                refreshed += 1;
            }
        }
    }
    // Drain the queue in order, waiting for the create window when it is full.
    'drain: while now_ms() - started < DRAIN_BUDGET_MS {
        let due = store::due_queued(&db, now_ms(), 25).await?;
        if due.is_empty() {
            break;
        }
        let mut progressed = false;
        for t in due {
            let Some(task) = store::task_by_id(&db, &t.id).await? else { continue };
            match p.submit(&task).await? {
                Submission::Submitted => {
                    submitted += 1;
                    progressed = true;
                }
                Submission::Failed => {
                    failed += 1;
                    progressed = true;
                }
                Submission::Deferred { next_attempt_at, .. } => {
                    deferred += 1;
                    let wait = next_attempt_at - now_ms();
                    if wait > 0 && now_ms() + wait - started < DRAIN_BUDGET_MS {
                        Delay::from(Duration::from_millis(wait.min(10_000) as u64)).await;
                        continue 'drain;
                    }
                    break 'drain;
                }
                Submission::Skipped => {}
            }
        }
        if !progressed {
            break;
        }
    }
    let pruned = store::prune_rate_windows(&db, now_ms()).await?;
    let summary = json!({ "submitted": submitted, "deferred": deferred, "failed_submissions": failed, "refreshed": refreshed,
                          "rate_windows_pruned": pruned });
    store::record_cron_run(&db, started, now_ms(), &summary.to_string()).await?;
    Ok(summary)
}

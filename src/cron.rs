//! The scheduled job (every minute): refresh tasks that went quiet at Kie,
//! resubmit deferred tasks within Kie's create window, fail (and refund) tasks
//! past their deadline, and keep house. Every step is a conditional write, so
//! two runs at once are harmless.

use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::log::Log;
use crate::adapters::settings;
use crate::adapters::store::{ops, tasks};
use crate::domain::error::{AppError, AppResult};
use crate::pipeline::{Pipeline, Submission};
use serde_json::{json, Value};
use std::time::Duration;
use worker::{Delay, Env};

/// How long one run keeps draining the queue (a minute-cron must end before the next).
const DRAIN_BUDGET_MS: i64 = 45_000;

#[derive(Default)]
struct Summary {
    refreshed: u32,
    submitted: u32,
    deferred: u32,
    failed_submissions: u32,
    rate_windows_pruned: usize,
}

pub async fn run(env: Env, cron: String) {
    let started = now_ms();
    let log = Log::new(&format!("cron-{started}"), "cron");
    let outcome = run_steps(&env, &log, started).await;
    crate::monitoring::after_cron(&env, &log).await;
    match outcome {
        Ok(summary) => {
            let mut fields = log.cost_fields();
            if let Some(o) = fields.as_object_mut() {
                o.insert("cron".into(), json!(cron));
                o.insert("duration_ms".into(), json!(now_ms() - started));
                o.insert("summary".into(), summary);
            }
            log.info("cron.run", "scheduled run finished", fields)
        }
        Err(e) => log.error("cron.failed", "scheduled run failed", json!({ "cron": cron, "cause": e.internal, "reason": e.message })),
    }
}

async fn run_steps(env: &Env, log: &Log, started: i64) -> AppResult<Value> {
    let cfg = settings::config(env)
        .map_err(|p| AppError::internal(format!("config problems: {:?}", p.iter().map(|p| &p.name).collect::<Vec<_>>())))?;
    let d1 = env.d1("DB").map_err(|e| AppError::internal(format!("d1 binding: {e}")))?;
    let db = Db::new(d1, log.clone());
    let p = Pipeline { env: env.clone(), db: db.clone(), cfg, log: log.clone() };
    let mut summary = Summary::default();
    // Tasks already at Kie first: they are paid for there.
    refresh_quiet(&p, &mut summary).await?;
    drain_queue(&p, &mut summary, started).await?;
    summary.rate_windows_pruned = ops::prune_rate_windows(&db, now_ms()).await?;
    let summary = json!({ "submitted": summary.submitted, "deferred": summary.deferred, "failed_submissions": summary.failed_submissions,
                          "refreshed": summary.refreshed, "rate_windows_pruned": summary.rate_windows_pruned });
    ops::record_cron_run(&db, started, now_ms(), &summary.to_string()).await?;
    Ok(summary)
}

/// Asks Kie about tasks not heard of for a while, and fails those past their deadline.
async fn refresh_quiet(p: &Pipeline, summary: &mut Summary) -> AppResult<()> {
    let quiet_ms = p.cfg.refresh_quiet_s * 1000;
    for task in tasks::quiet_at_kie(&p.db, now_ms(), quiet_ms, 50).await? {
        let now = now_ms();
        if tasks::claim_refresh(&p.db, &task.id, now, quiet_ms / 2, false).await? || task.is_overdue(now) {
            p.refresh(&task).await?;
            summary.refreshed += 1;
        }
    }
    Ok(())
}

/// Submits queued tasks in creation order, waiting for the create window
/// when it is full, until the run's time budget is spent.
async fn drain_queue(p: &Pipeline, summary: &mut Summary, started: i64) -> AppResult<()> {
    'drain: while now_ms() - started < DRAIN_BUDGET_MS {
        let due = tasks::due_queued(&p.db, now_ms(), 25).await?;
        if due.is_empty() {
            break;
        }
        let mut progressed = false;
        for task in due {
            match p.submit(&task).await? {
                Submission::Submitted => {
                    summary.submitted += 1;
                    progressed = true;
                }
                Submission::Failed => {
                    summary.failed_submissions += 1;
                    progressed = true;
                }
                Submission::Deferred { next_attempt_at } => {
                    summary.deferred += 1;
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
    Ok(())
}

//! The scheduled job (every minute): refresh tasks that went quiet at Kie,
//! resubmit deferred tasks within Kie's create window, fail (and refund) tasks
//! past their deadline, and keep house (one batch that forgets what is past
//! its keeping time). Every step is a conditional write, so two runs at once
//! are harmless. The monitoring step (alerts) runs first. A run stays inside
//! the invocation's subrequest budget and its time: what does not fit is left
//! to the next run.

use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::log::Log;
use crate::adapters::settings;
use crate::adapters::store::{accounts, ops, orders, tasks};
use crate::domain::error::{AppError, AppResult};
use crate::pipeline::{Pipeline, Submission};
use serde_json::{json, Value};
use std::time::Duration;
use worker::{Delay, Env};

/// How long one run works (a minute-cron must end before the next begins).
const RUN_BUDGET_MS: i64 = 45_000;
/// Subrequests kept for the end of the run: housekeeping (one batch) and the run's record.
const END_RESERVE: u32 = 2;
/// At most what refreshing one task costs: claim, record, then either a state
/// write, or copying one result (fetch, put) and finishing, or failing it.
const REFRESH_COST: u32 = 5;
/// At most what submitting one task costs: claim, create, then mark it or
/// defer it (next slot, defer), or fail it.
const SUBMIT_COST: u32 = 4;
/// Tasks read per query.
const PAGE: u32 = 25;

#[derive(Default)]
struct Summary {
    refreshed: u32,
    submitted: u32,
    deferred: u32,
    failed_submissions: u32,
    rate_windows_pruned: usize,
    stripe_events_pruned: usize,
    /// The run stopped early to stay inside its budget (subrequests or time).
    stopped_early: bool,
}

pub async fn run(env: Env, cron: String) {
    let started = now_ms();
    let log = Log::new(&format!("cron-{started}"), "cron");
    if let Ok(cfg) = settings::config(&env) {
        log.set_subrequest_budget(cfg.subrequest_budget);
    }
    // Monitoring first: its cost is bounded, and alerts must be evaluated even
    // when the task work fails or a backlog would take the whole budget.
    crate::monitoring::run(&env, &log).await;
    let outcome = run_steps(&env, &log, started).await;
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
        Err(e) => {
            let mut fields = log.cost_fields();
            if let Some(o) = fields.as_object_mut() {
                o.insert("cron".into(), json!(cron));
                o.insert("cause".into(), json!(e.internal));
                o.insert("reason".into(), json!(e.message));
            }
            log.error("cron.failed", "scheduled run failed", fields)
        }
    }
}

async fn run_steps(env: &Env, log: &Log, started: i64) -> AppResult<Value> {
    let cfg = settings::config(env)
        .map_err(|p| AppError::internal(format!("config problems: {:?}", p.iter().map(|p| &p.name).collect::<Vec<_>>())))?;
    let db = Db::from_env(env, log)?;
    let p = Pipeline::new(env.clone(), db.clone(), cfg, log.clone()).until(started + RUN_BUDGET_MS);
    let mut summary = Summary::default();
    // Tasks already at Kie first: they are paid for there.
    refresh_quiet(&p, &mut summary).await?;
    drain_queue(&p, &mut summary).await?;
    forget_old_records(&p, &mut summary).await?;
    let summary = json!({ "submitted": summary.submitted, "deferred": summary.deferred, "failed_submissions": summary.failed_submissions,
                          "refreshed": summary.refreshed, "rate_windows_pruned": summary.rate_windows_pruned,
                          "stripe_events_pruned": summary.stripe_events_pruned,
                          "stopped_early": summary.stopped_early });
    ops::record_cron_run(&db, started, now_ms(), &summary.to_string()).await?;
    Ok(summary)
}

/// Whether a step costing `cost` subrequests (and the end of the run) still fits.
fn fits(p: &Pipeline, cost: u32) -> bool {
    p.log.subrequests_left() >= cost + END_RESERVE && p.time_left() > 2_000
}

/// Asks Kie about tasks not heard of for a while, and fails those past their deadline.
async fn refresh_quiet(p: &Pipeline, summary: &mut Summary) -> AppResult<()> {
    let quiet_ms = p.cfg.refresh_quiet_s * 1000;
    if !fits(p, 1 + REFRESH_COST) {
        summary.stopped_early = true;
        return Ok(());
    }
    for task in tasks::quiet_at_kie(&p.db, now_ms(), quiet_ms, PAGE).await? {
        if !fits(p, REFRESH_COST) {
            summary.stopped_early = true;
            return Ok(());
        }
        let now = now_ms();
        if tasks::claim_refresh(&p.db, &task.id, now, quiet_ms / 2, false).await? || task.is_overdue(now) {
            p.refresh(&task).await?;
            summary.refreshed += 1;
        }
    }
    Ok(())
}

/// Submits queued tasks in creation order, waiting for Kie's create window
/// when it is full, while the run's budget lasts.
async fn drain_queue(p: &Pipeline, summary: &mut Summary) -> AppResult<()> {
    'drain: loop {
        if !fits(p, 1 + SUBMIT_COST) {
            summary.stopped_early = true;
            break;
        }
        let due = tasks::due_queued(&p.db, now_ms(), PAGE).await?;
        if due.is_empty() {
            break;
        }
        let mut progressed = false;
        for task in due {
            if !fits(p, SUBMIT_COST) || !p.has_time_to_submit() {
                summary.stopped_early = true;
                break 'drain;
            }
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
                    if wait > 0 && wait < p.time_left() - 2_000 {
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

/// Keeps house in one batch: rate windows older than an hour, expired
/// sessions, sign-ins and sign-ups, old IP windows, Stripe event ids past
/// their keeping time.
async fn forget_old_records(p: &Pipeline, summary: &mut Summary) -> AppResult<()> {
    let now = now_ms();
    let mut forget = vec![ops::forget_rate_windows(&p.db, now)?, orders::forget_old_events(&p.db, now)?];
    forget.extend(accounts::forget_expired(&p.db, now, p.cfg.new_accounts_window_s * 1000)?);
    let changes = p.db.batch(forget).await?;
    let mut changes = changes.into_iter();
    summary.rate_windows_pruned = changes.next().unwrap_or(0);
    summary.stripe_events_pruned = changes.next().unwrap_or(0);
    Ok(())
}

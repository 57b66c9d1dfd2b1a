//! Monitoring: the dashboard's counters (tasks rolled up by the hour, Kie
//! calls, per-minute events), the samples of the queue and the Kie balance,
//! the alerts, and the pruning that keeps every one of these tables bounded.
//! Every read is a range over a primary key or an index.

use super::super::d1::{num, text, Db, Stmt};
use super::states_in;
use crate::domain::error::AppResult;
use crate::domain::monitor::alerts::{QueueStats, OVERDUE_GRACE_MS};
use crate::domain::monitor::metrics::{EventRow, KieRow, SampleRow, TaskRow};
use crate::domain::monitor::stats::{bucket_sql, Counter, Tally, HOUR_MS, MINUTE_MS};
use crate::domain::monitor::{KEEP_ALERTS_MS, KEEP_METRICS_MS};
use crate::domain::task::TaskState;
use serde_json::Value;
use wasm_bindgen::JsValue;

const ROLLUP_KEY: &str = "tasks_rolled_up_to";

// Rows are read as JSON values and picked apart here: one generic decoder
// instead of a derived one per row shape keeps the Worker's bundle small.
fn int(row: &Value, key: &str) -> Option<i64> {
    row.get(key).and_then(Value::as_f64).map(|n| n as i64)
}
fn count(row: &Value, key: &str) -> i64 {
    int(row, key).unwrap_or(0)
}
fn string(row: &Value, key: &str) -> Option<String> {
    row.get(key).and_then(Value::as_str).map(str::to_string)
}
fn task_row(r: &Value) -> TaskRow {
    TaskRow {
        hour: count(r, "hour"),
        model: string(r, "model").unwrap_or_default(),
        outcome: string(r, "outcome").unwrap_or_default(),
        bucket: count(r, "bucket"),
        tasks: count(r, "tasks"),
        credits: count(r, "credits"),
    }
}

/// Adds an isolate's counters to D1, one upsert per counter, in one batch.
pub async fn add_tally(db: &Db, tally: &Tally) -> AppResult<()> {
    let mut stmts: Vec<Stmt> = Vec::new();
    for (counter, n) in tally.entries() {
        stmts.push(match counter {
            Counter::KieCall { hour, op, result, bucket } => db.stmt(
                "INSERT INTO kie_calls (hour, op, result, bucket, calls) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (hour, op, result, bucket) DO UPDATE SET calls = calls + excluded.calls",
                &[num(*hour), text(op), text(result), num(*bucket), num(n)],
            )?,
            Counter::Event { minute, kind } => db.stmt(
                "INSERT INTO monitor_events (minute, kind, count) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (minute, kind) DO UPDATE SET count = count + excluded.count",
                &[num(*minute), text(kind), num(n)],
            )?,
        });
    }
    if !stmts.is_empty() {
        db.batch(stmts).await?;
    }
    Ok(())
}

/// `SELECT hour, model, outcome, bucket, tasks, credits` over finished tasks
/// matching `filter` (an SQL condition on `completed_at`).
fn finished_tasks_sql(filter: &str) -> String {
    format!(
        "SELECT (completed_at / {HOUR_MS}) * {HOUR_MS} AS hour, model, \
         CASE WHEN state = 'succeeded' THEN 'succeeded' ELSE COALESCE(error_code, 'unknown') END AS outcome, \
         {} AS bucket, COUNT(*) AS tasks, SUM(CASE WHEN state = 'succeeded' THEN credits ELSE 0 END) AS credits \
         FROM tasks WHERE {filter} GROUP BY 1, 2, 3, 4",
        bucket_sql("(completed_at - created_at)")
    )
}

/// Rolls finished tasks up into `task_hours`, from where the last run stopped
/// up to `cut`, and moves the mark, in one transaction: two runs at once
/// cannot count a task twice (the second sees the moved mark).
pub async fn rollup_tasks(db: &Db, cut: i64) -> AppResult<usize> {
    let select = finished_tasks_sql("completed_at >= (SELECT value FROM monitor_state WHERE key = ?2) AND completed_at < ?1");
    let changes = db
        .batch(vec![
            db.stmt(
                &format!(
                    "INSERT INTO task_hours (hour, model, outcome, bucket, tasks, credits) {select} \
                     ON CONFLICT (hour, model, outcome, bucket) DO UPDATE SET tasks = tasks + excluded.tasks, credits = credits + excluded.credits"
                ),
                &[num(cut), text(ROLLUP_KEY)],
            )?,
            db.stmt("UPDATE monitor_state SET value = ?1 WHERE key = ?2 AND value < ?1", &[num(cut), text(ROLLUP_KEY)])?,
        ])
        .await?;
    Ok(changes.first().copied().unwrap_or(0))
}

/// Finished-task counters from `from_hour` on: what is rolled up, plus the
/// tasks that finished since (read live, so the dashboard is never behind).
pub async fn task_rows(db: &Db, from_hour: i64) -> AppResult<Vec<TaskRow>> {
    let mut rows: Vec<Value> =
        db.all(db.stmt("SELECT hour, model, outcome, bucket, tasks, credits FROM task_hours WHERE hour >= ?1", &[num(from_hour)])?).await?;
    // Not rolled up yet (only minutes, unless the cron has stopped; never before the window).
    let live = finished_tasks_sql("completed_at >= MAX(?2, (SELECT value FROM monitor_state WHERE key = ?1))");
    rows.extend(db.all::<Value>(db.stmt(&live, &[text(ROLLUP_KEY), num(from_hour)])?).await?);
    Ok(rows.iter().map(task_row).collect())
}

pub async fn kie_rows(db: &Db, from_hour: i64) -> AppResult<Vec<KieRow>> {
    let stmt = db.stmt(
        "SELECT op, result, bucket, SUM(calls) AS calls FROM kie_calls WHERE hour >= ?1 GROUP BY op, result, bucket",
        &[num(from_hour)],
    )?;
    let rows: Vec<Value> = db.all(stmt).await?;
    Ok(rows
        .iter()
        .map(|r| KieRow {
            op: string(r, "op").unwrap_or_default(),
            result: string(r, "result").unwrap_or_default(),
            bucket: count(r, "bucket"),
            calls: count(r, "calls"),
        })
        .collect())
}

/// Event counters from `from` on, summed by kind.
pub async fn events_since(db: &Db, from: i64) -> AppResult<Vec<EventRow>> {
    let stmt = db.stmt(
        "SELECT kind, SUM(count) AS count FROM monitor_events WHERE minute >= ?1 GROUP BY kind",
        &[num(from.div_euclid(MINUTE_MS) * MINUTE_MS)],
    )?;
    let rows: Vec<Value> = db.all(stmt).await?;
    Ok(rows.iter().map(|r| EventRow { kind: string(r, "kind").unwrap_or_default(), count: count(r, "count") }).collect())
}

/// Tasks finished since `from`, by outcome (`succeeded` or the failure code).
pub async fn outcomes_since(db: &Db, from: i64) -> AppResult<Vec<(String, i64)>> {
    let stmt = db.stmt(
        "SELECT CASE WHEN state = 'succeeded' THEN 'succeeded' ELSE COALESCE(error_code, 'unknown') END AS outcome, COUNT(*) AS n \
         FROM tasks WHERE completed_at >= ?1 GROUP BY 1",
        &[num(from)],
    )?;
    let rows: Vec<Value> = db.all(stmt).await?;
    Ok(rows.iter().map(|r| (string(r, "outcome").unwrap_or_default(), count(r, "n"))).collect())
}

/// Unfinished tasks now: queued, at Kie, the oldest queued, and how many are
/// well past their deadline (one pass over the state index).
pub async fn queue_now(db: &Db, now: i64) -> AppResult<QueueStats> {
    let mut args = vec![num(now - OVERDUE_GRACE_MS), text(TaskState::Queued.as_str())];
    let active = states_in("state", &TaskState::ACTIVE, &mut args);
    let stmt = db.stmt(
        &format!(
            "SELECT SUM(state = ?2) AS queued, SUM(state != ?2) AS at_kie, MIN(CASE WHEN state = ?2 THEN created_at END) AS oldest_queued_at, \
             SUM(deadline_at < ?1) AS overdue FROM tasks WHERE {active}"
        ),
        &args,
    )?;
    let row = db.first::<Value>(stmt).await?.unwrap_or(Value::Null);
    Ok(QueueStats {
        queued: count(&row, "queued"),
        at_kie: count(&row, "at_kie"),
        oldest_queued_at: int(&row, "oldest_queued_at"),
        overdue: count(&row, "overdue"),
    })
}

pub async fn record_sample(db: &Db, at: i64, q: &QueueStats, kie_balance: Option<f64>) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO monitor_samples (at, queued, at_kie, oldest_queued_ms, overdue, kie_balance) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            num(at),
            num(q.queued),
            num(q.at_kie),
            q.oldest_queued_at.map(|t| num(at - t)).unwrap_or(JsValue::NULL),
            num(q.overdue),
            kie_balance.map(JsValue::from_f64).unwrap_or(JsValue::NULL),
        ],
    )?;
    db.run(stmt).await.map(|_| ())
}

/// When the first sample since `from` was taken (to choose the line's resolution).
pub async fn first_sample_since(db: &Db, from: i64) -> AppResult<Option<i64>> {
    let stmt = db.stmt("SELECT MIN(at) AS at FROM monitor_samples WHERE at >= ?1", &[num(from)])?;
    Ok(db.first::<Value>(stmt).await?.and_then(|r| int(&r, "at")))
}

/// Samples since `from`, one point per `bucket_ms`: the most queued and the
/// oldest wait of each interval.
pub async fn samples(db: &Db, from: i64, bucket_ms: i64) -> AppResult<Vec<SampleRow>> {
    let stmt = db.stmt(
        "SELECT (at / CAST(?2 AS INTEGER)) * CAST(?2 AS INTEGER) AS at, MAX(queued) AS queued, MAX(at_kie) AS at_kie, \
         MAX(oldest_queued_ms) AS oldest_queued_ms, MAX(overdue) AS overdue FROM monitor_samples WHERE at >= ?1 GROUP BY 1 ORDER BY 1",
        &[num(from), num(bucket_ms)],
    )?;
    let rows: Vec<Value> = db.all(stmt).await?;
    Ok(rows
        .iter()
        .map(|r| SampleRow {
            at: count(r, "at"),
            queued: count(r, "queued"),
            at_kie: count(r, "at_kie"),
            oldest_queued_ms: int(r, "oldest_queued_ms"),
            overdue: count(r, "overdue"),
        })
        .collect())
}

/// The Kie balance since `from`, one point per `bucket_ms`: the last balance
/// read in each interval (SQLite takes a bare column from the row of MAX(at)).
pub async fn balances(db: &Db, from: i64, bucket_ms: i64) -> AppResult<Vec<(i64, f64)>> {
    let stmt = db.stmt(
        "SELECT (at / CAST(?2 AS INTEGER)) * CAST(?2 AS INTEGER) AS bucket, MAX(at) AS last_at, kie_balance FROM monitor_samples \
         WHERE at >= ?1 AND kie_balance IS NOT NULL GROUP BY 1 ORDER BY 1",
        &[num(from), num(bucket_ms)],
    )?;
    let rows: Vec<Value> = db.all(stmt).await?;
    Ok(rows.iter().filter_map(|r| Some((count(r, "bucket"), r.get("kie_balance").and_then(Value::as_f64)?))).collect())
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: String,
    pub condition: String,
    pub state: String,
    pub message: String,
    pub resolved_message: Option<String>,
    pub started_at: i64,
    pub clear_since: Option<i64>,
    pub resolved_at: Option<i64>,
    pub start_sent_at: Option<i64>,
    pub end_sent_at: Option<i64>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

fn alert_row(r: &Value) -> AlertRow {
    AlertRow {
        id: string(r, "id").unwrap_or_default(),
        condition: string(r, "condition").unwrap_or_default(),
        state: string(r, "state").unwrap_or_default(),
        message: string(r, "message").unwrap_or_default(),
        resolved_message: string(r, "resolved_message"),
        started_at: count(r, "started_at"),
        clear_since: int(r, "clear_since"),
        resolved_at: int(r, "resolved_at"),
        start_sent_at: int(r, "start_sent_at"),
        end_sent_at: int(r, "end_sent_at"),
        attempts: count(r, "attempts"),
        last_error: string(r, "last_error"),
    }
}

async fn alerts(db: &Db, stmt: Stmt) -> AppResult<Vec<AlertRow>> {
    let rows: Vec<Value> = db.all(stmt).await?;
    Ok(rows.iter().map(alert_row).collect())
}

const ALERT_COLUMNS: &str = "id, condition, state, message, resolved_message, started_at, clear_since, resolved_at, \
    start_sent_at, end_sent_at, attempts, last_error";

pub async fn open_alerts(db: &Db) -> AppResult<Vec<AlertRow>> {
    alerts(db, db.stmt(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'open'"), &[])?).await
}

/// Opens an alert for `condition`; false when one is already open (the
/// unique index on open conditions decides between two runs).
pub async fn open_alert(db: &Db, id: &str, condition: &str, message: &str, now: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "INSERT INTO alerts (id, condition, state, message, started_at) VALUES (?1, ?2, 'open', ?3, ?4) ON CONFLICT DO NOTHING",
        &[text(id), text(condition), text(message), num(now)],
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// Marks an open alert as clearing since `since` (or not, with `None`).
pub async fn set_clear_since(db: &Db, id: &str, since: Option<i64>) -> AppResult<()> {
    let stmt = db.stmt(
        "UPDATE alerts SET clear_since = ?2 WHERE id = ?1 AND state = 'open'",
        &[text(id), since.map(num).unwrap_or(JsValue::NULL)],
    )?;
    db.run(stmt).await.map(|_| ())
}

/// Resolves an open alert; false if another run did it first.
pub async fn resolve_alert(db: &Db, id: &str, message: &str, now: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "UPDATE alerts SET state = 'resolved', resolved_at = ?2, resolved_message = ?3 WHERE id = ?1 AND state = 'open'",
        &[text(id), num(now), text(message)],
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// Alerts with a message still to send (changed within `max_age_ms`), oldest first.
pub async fn pending_deliveries(db: &Db, now: i64, max_age_ms: i64, limit: u32) -> AppResult<Vec<AlertRow>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE (start_sent_at IS NULL OR end_sent_at IS NULL) \
             AND (start_sent_at IS NULL OR state = 'resolved') AND COALESCE(resolved_at, started_at) > ?1 - ?2 \
             AND (sending_until IS NULL OR sending_until < ?1) ORDER BY started_at LIMIT ?3"
        ),
        &[num(now), num(max_age_ms), num(i64::from(limit))],
    )?;
    alerts(db, stmt).await
}

/// Takes the right to send an alert's next message for `lease_ms` and returns
/// the alert as it is now, if it still has a message to send and no other run
/// holds it: two runs at once never send the same message.
pub async fn claim_delivery(db: &Db, id: &str, now: i64, lease_ms: i64) -> AppResult<Option<AlertRow>> {
    let stmt = db.stmt(
        &format!(
            "UPDATE alerts SET sending_until = ?2 + ?3 WHERE id = ?1 AND (sending_until IS NULL OR sending_until < ?2) \
             AND (start_sent_at IS NULL OR (state = 'resolved' AND end_sent_at IS NULL)) RETURNING {ALERT_COLUMNS}"
        ),
        &[text(id), num(now), num(lease_ms)],
    )?;
    Ok(alerts(db, stmt).await?.into_iter().next())
}

/// Records a delivered message: the start (`end = false`) or the end.
pub async fn mark_sent(db: &Db, id: &str, end: bool, now: i64) -> AppResult<()> {
    let column = if end { "end_sent_at" } else { "start_sent_at" };
    let stmt = db.stmt(
        &format!("UPDATE alerts SET {column} = ?2, attempts = attempts + 1, last_error = NULL, sending_until = NULL WHERE id = ?1"),
        &[text(id), num(now)],
    )?;
    db.run(stmt).await.map(|_| ())
}

/// Records a failed delivery; the next run tries again.
pub async fn mark_failed(db: &Db, id: &str, error: &str) -> AppResult<()> {
    let stmt = db
        .stmt("UPDATE alerts SET attempts = attempts + 1, last_error = ?2, sending_until = NULL WHERE id = ?1", &[text(id), text(error)])?;
    db.run(stmt).await.map(|_| ())
}

/// Open alerts, then those started since `since`, newest first (each half
/// read through its own index).
pub async fn list_alerts(db: &Db, since: i64, limit: u32) -> AppResult<Vec<AlertRow>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {ALERT_COLUMNS}, 1 AS is_open FROM alerts WHERE state = 'open' \
             UNION ALL SELECT {ALERT_COLUMNS}, 0 AS is_open FROM alerts WHERE started_at >= ?1 AND state = 'resolved' \
             ORDER BY is_open DESC, started_at DESC LIMIT ?2"
        ),
        &[num(since), num(i64::from(limit))],
    )?;
    alerts(db, stmt).await
}

/// How delivery has gone lately: when a message last arrived, and the error
/// of the newest message still waiting, if any.
#[derive(Debug, Clone)]
pub struct DeliveryStatus {
    pub last_sent_at: Option<i64>,
    pub waiting: i64,
    pub last_error: Option<String>,
}

pub async fn delivery_status(db: &Db, since: i64) -> AppResult<DeliveryStatus> {
    let stmt = db.stmt(
        "SELECT MAX(COALESCE(end_sent_at, start_sent_at)) AS last_sent_at, \
         SUM((start_sent_at IS NULL OR (state = 'resolved' AND end_sent_at IS NULL)) AND attempts > 0) AS waiting, \
         (SELECT last_error FROM alerts WHERE last_error IS NOT NULL AND started_at >= ?1 ORDER BY started_at DESC LIMIT 1) AS last_error \
         FROM alerts WHERE started_at >= ?1",
        &[num(since)],
    )?;
    let row = db.first::<Value>(stmt).await?.unwrap_or(Value::Null);
    Ok(DeliveryStatus { last_sent_at: int(&row, "last_sent_at"), waiting: count(&row, "waiting"), last_error: string(&row, "last_error") })
}

/// Forgets what is older than the dashboard shows and resolved alerts older
/// than a month; thins the samples that just turned a day old to one every
/// 15 minutes; and keeps the cron's own run history to the same 8 days.
pub async fn prune(db: &Db, now: i64) -> AppResult<usize> {
    let old = now - KEEP_METRICS_MS;
    let day = now - 24 * HOUR_MS;
    let changes = db
        .batch(vec![
            db.stmt("DELETE FROM task_hours WHERE hour < ?1", &[num(old)])?,
            db.stmt("DELETE FROM kie_calls WHERE hour < ?1", &[num(old)])?,
            db.stmt("DELETE FROM monitor_events WHERE minute < ?1", &[num(old)])?,
            db.stmt("DELETE FROM monitor_samples WHERE at < ?1", &[num(old)])?,
            db.stmt("DELETE FROM monitor_samples WHERE at >= ?1 - 7200000 AND at < ?1 AND (at / 60000) % 15 != 0", &[num(day)])?,
            db.stmt("DELETE FROM alerts WHERE state = 'resolved' AND started_at < ?1 AND resolved_at < ?1", &[num(now - KEEP_ALERTS_MS)])?,
            db.stmt(
                "DELETE FROM cron_runs WHERE id < (SELECT id FROM cron_runs WHERE finished_at >= ?1 ORDER BY id LIMIT 1)",
                &[num(old)],
            )?,
        ])
        .await?;
    Ok(changes.iter().sum())
}

/// Counts one browser report from `client` in the current minute; returns the count so far.
pub async fn hit_client_window(db: &Db, client: &str, window_start: i64) -> AppResult<i64> {
    // The per-user create limit's table, keyed here by a hash of the client's address.
    let stmt = db.stmt(
        "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?1, ?2, 1) \
         ON CONFLICT (user_id, window_start) DO UPDATE SET count = count + 1 RETURNING count",
        &[text(client), num(window_start)],
    )?;
    Ok(db.first::<Value>(stmt).await?.map_or(1, |r| count(&r, "count")))
}

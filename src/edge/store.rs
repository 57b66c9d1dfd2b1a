//! Every SQL statement of the service, next to the types it reads. Writes that
//! move money or state are single conditional statements or D1 batches (one
//! transaction each), so concurrent requests, callbacks and cron runs cannot
//! double-spend, double-refund or move a terminal task.

use super::db::{num, opt_text, text, Db};
use crate::domain::error::AppResult;
use crate::domain::task::{TaskFailure, TaskRecord, ACTIVE_STATES_SQL};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub credits: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LedgerRow {
    pub id: i64,
    pub task_id: Option<String>,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub reason: Option<String>,
    pub actor: String,
    pub created_at: i64,
}

const TASK_COLUMNS: &str = "t.id, t.user_id, t.model, t.prompt, t.aspect_ratio, t.resolution, t.output_format, t.inputs, \
    t.results, t.state, t.credits, t.error_code, t.error_message, t.provider_task_id, t.callback_token, t.request_hash, \
    t.attempts, t.checked_at, t.submitted_at, t.deadline_at, t.created_at, t.updated_at, t.completed_at";

// ---- users and keys ----

pub async fn user_by_key(db: &Db, key_hash: &str) -> AppResult<Option<UserRow>> {
    let stmt = db.stmt(
        "SELECT u.id, u.name, u.credits, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
        &[text(key_hash)],
    )?;
    db.first(stmt).await
}

pub async fn user_by_id(db: &Db, id: &str) -> AppResult<Option<UserRow>> {
    let stmt = db.stmt("SELECT id, name, credits, created_at FROM users WHERE id = ?1", &[text(id)])?;
    db.first(stmt).await
}

pub async fn list_users(db: &Db, limit: u32, before: Option<(i64, String)>) -> AppResult<Vec<UserRow>> {
    let (ts, id) = before.unwrap_or((i64::MAX / 2, String::new()));
    let stmt = db.stmt(
        "SELECT id, name, credits, created_at FROM users WHERE (created_at, id) < (?1, ?2) \
         ORDER BY created_at DESC, id DESC LIMIT ?3",
        &[num(ts), text(if id.is_empty() { "\u{10FFFF}" } else { &id }), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

pub async fn create_user(db: &Db, id: &str, name: &str, credits: i64, key_hash: &str, now: i64) -> AppResult<()> {
    let mut stmts = vec![
        db.stmt(
            "INSERT INTO users (id, name, credits, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            &[text(id), text(name), num(credits), num(now)],
        )?,
        db.stmt(
            "INSERT INTO api_keys (key_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            &[text(key_hash), text(id), num(now)],
        )?,
        db.stmt(
            "INSERT INTO audit_log (actor, action, target, detail, created_at) VALUES ('admin', 'user.create', ?1, ?2, ?3)",
            &[text(id), text(name), num(now)],
        )?,
    ];
    if credits > 0 {
        stmts.push(db.stmt(
            "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
             VALUES (?1, 'grant', ?2, ?2, 'starting credits', 'admin', ?3)",
            &[text(id), num(credits), num(now)],
        )?);
    }
    db.batch(stmts).await?;
    Ok(())
}

/// Grants (positive) or takes (negative) credits; `None` when the user does not
/// exist or the balance would fall below zero.
pub async fn adjust_credits(db: &Db, user_id: &str, amount: i64, reason: &str, now: i64) -> AppResult<Option<i64>> {
    let kind = if amount >= 0 { "grant" } else { "adjust" };
    let changes = db
        .batch(vec![
            db.stmt(
                "UPDATE users SET credits = credits + ?2, updated_at = ?3 WHERE id = ?1 AND credits + ?2 >= 0",
                &[text(user_id), num(amount), num(now)],
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT id, ?2, ?3, credits, ?4, 'admin', ?5 FROM users WHERE id = ?1 AND changes() = 1",
                &[text(user_id), text(kind), num(amount), text(reason), num(now)],
            )?,
        ])
        .await?;
    if changes.first() != Some(&1) {
        return Ok(None);
    }
    Ok(user_by_id(db, user_id).await?.map(|u| u.credits))
}

/// Revokes every key of the user and stores a new one; false if no such user.
pub async fn rotate_key(db: &Db, user_id: &str, key_hash: &str, now: i64) -> AppResult<bool> {
    let changes = db
        .batch(vec![
            db.stmt(
                "UPDATE api_keys SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                &[text(user_id), num(now)],
            )?,
            db.stmt(
                "INSERT INTO api_keys (key_hash, user_id, created_at) SELECT ?2, id, ?3 FROM users WHERE id = ?1",
                &[text(user_id), text(key_hash), num(now)],
            )?,
            db.stmt(
                "INSERT INTO audit_log (actor, action, target, created_at) SELECT 'admin', 'key.rotate', id, ?2 FROM users WHERE id = ?1",
                &[text(user_id), num(now)],
            )?,
        ])
        .await?;
    Ok(changes.get(1) == Some(&1))
}

/// Counts one request in the user's current minute; returns the count so far.
pub async fn hit_rate_window(db: &Db, user_id: &str, window_start: i64) -> AppResult<i64> {
    #[derive(Deserialize)]
    struct Count {
        count: i64,
    }
    let stmt = db.stmt(
        "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?1, ?2, 1) \
         ON CONFLICT (user_id, window_start) DO UPDATE SET count = count + 1 RETURNING count",
        &[text(user_id), num(window_start)],
    )?;
    Ok(db.first::<Count>(stmt).await?.map(|c| c.count).unwrap_or(1))
}

// ---- tasks ----

pub async fn task_by_id(db: &Db, id: &str) -> AppResult<Option<TaskRecord>> {
    let stmt = db.stmt(&format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = ?1"), &[text(id)])?;
    db.first(stmt).await
}

/// A task as seen by the holder of `key_hash`: one indexed query that also
/// authenticates. `None` for a bad key, a missing task or someone else's task.
pub async fn task_for_key(db: &Db, key_hash: &str, id: &str) -> AppResult<Option<TaskRecord>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM api_keys k JOIN tasks t ON t.user_id = k.user_id \
             WHERE k.key_hash = ?1 AND k.revoked_at IS NULL AND t.id = ?2"
        ),
        &[text(key_hash), text(id)],
    )?;
    db.first(stmt).await
}

pub async fn task_by_idempotency_key(db: &Db, user_id: &str, key: &str) -> AppResult<Option<TaskRecord>> {
    let stmt = db.stmt(
        &format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.user_id = ?1 AND t.idempotency_key = ?2"),
        &[text(user_id), text(key)],
    )?;
    db.first(stmt).await
}

pub async fn list_tasks(
    db: &Db,
    user_id: Option<&str>,
    state: Option<&str>,
    limit: u32,
    before: Option<(i64, String)>,
) -> AppResult<Vec<TaskRecord>> {
    let (ts, id) = before.unwrap_or((i64::MAX / 2, "\u{10FFFF}".into()));
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE (t.created_at, t.id) < (?1, ?2)");
    let mut args = vec![num(ts), text(&id), num(i64::from(limit))];
    if let Some(u) = user_id {
        args.push(text(u));
        sql.push_str(&format!(" AND t.user_id = ?{}", args.len()));
    }
    if let Some(st) = state {
        args.push(text(st));
        sql.push_str(&format!(" AND t.state = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY t.created_at DESC, t.id DESC LIMIT ?3");
    let stmt = db.stmt(&sql, &args)?;
    db.all(stmt).await
}

pub struct NewTask<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub model: &'a str,
    pub prompt: &'a str,
    pub aspect_ratio: &'a str,
    pub resolution: Option<&'a str>,
    pub output_format: &'a str,
    pub inputs_json: &'a str,
    pub credits: i64,
    pub callback_token: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub now: i64,
    pub deadline_at: i64,
}

impl NewTask<'_> {
    /// The row as `reserve_task` inserts it (saves reading it back).
    pub fn record(&self) -> TaskRecord {
        TaskRecord {
            id: self.id.to_string(),
            user_id: self.user_id.to_string(),
            model: self.model.to_string(),
            prompt: self.prompt.to_string(),
            aspect_ratio: Some(self.aspect_ratio.to_string()),
            resolution: self.resolution.map(str::to_string),
            output_format: Some(self.output_format.to_string()),
            inputs: self.inputs_json.to_string(),
            results: "[]".into(),
            state: "queued".into(),
            credits: self.credits,
            error_code: None,
            error_message: None,
            provider_task_id: None,
            callback_token: self.callback_token.to_string(),
            request_hash: Some(self.request_hash.to_string()),
            attempts: 0,
            checked_at: None,
            submitted_at: None,
            deadline_at: Some(self.deadline_at),
            created_at: self.now,
            updated_at: self.now,
            completed_at: None,
        }
    }
}

pub enum Reservation {
    Reserved,
    /// The balance or the active-task cap did not allow it.
    Refused { balance: i64, active: i64 },
    /// Another request with the same Idempotency-Key won the race.
    DuplicateKey,
}

/// Debits the price and inserts the task in one transaction, conditional on the
/// balance and the cap of unfinished tasks: there is no check-then-debit.
pub async fn reserve_task(db: &Db, t: &NewTask<'_>, max_active: i64) -> AppResult<Reservation> {
    let stmts = vec![
        db.stmt(
            &format!(
                "UPDATE users SET credits = credits - ?1, updated_at = ?3 WHERE id = ?2 AND credits >= ?1 \
                 AND (SELECT COUNT(*) FROM tasks WHERE user_id = ?2 AND state IN {ACTIVE_STATES_SQL}) < ?4"
            ),
            &[num(t.credits), text(t.user_id), num(t.now), num(max_active)],
        )?,
        db.stmt(
            "INSERT INTO tasks (id, user_id, model, prompt, aspect_ratio, resolution, output_format, inputs, state, credits, \
             callback_token, idempotency_key, request_hash, created_at, updated_at, deadline_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12, ?13, ?13, ?14 WHERE changes() = 1",
            &[
                text(t.id),
                text(t.user_id),
                text(t.model),
                text(t.prompt),
                text(t.aspect_ratio),
                opt_text(t.resolution),
                text(t.output_format),
                text(t.inputs_json),
                num(t.credits),
                text(t.callback_token),
                opt_text(t.idempotency_key),
                text(t.request_hash),
                num(t.now),
                num(t.deadline_at),
            ],
        )?,
        db.stmt(
            "INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, actor, created_at) \
             SELECT id, ?2, 'reserve', -?3, credits, 'user', ?4 FROM users WHERE id = ?1 AND changes() = 1",
            &[text(t.user_id), text(t.id), num(t.credits), num(t.now)],
        )?,
    ];
    match db.batch(stmts).await {
        Ok(changes) if changes.first() == Some(&1) => Ok(Reservation::Reserved),
        Ok(_) => {
            #[derive(Deserialize)]
            struct Why {
                credits: i64,
                active: i64,
            }
            let stmt = db.stmt(
                &format!(
                    "SELECT credits, (SELECT COUNT(*) FROM tasks WHERE user_id = ?1 AND state IN {ACTIVE_STATES_SQL}) AS active \
                     FROM users WHERE id = ?1"
                ),
                &[text(t.user_id)],
            )?;
            let why = db.first::<Why>(stmt).await?;
            Ok(why
                .map(|w| Reservation::Refused { balance: w.credits, active: w.active })
                .unwrap_or(Reservation::Refused { balance: 0, active: 0 }))
        }
        Err(e) if e.constraint => Ok(Reservation::DuplicateKey),
        Err(e) => Err(e.into()),
    }
}

/// Takes the right to submit a queued task now: a lease on the task and a slot
/// in the account-wide Kie create window, in one transaction.
/// Returns (lease won, slot won).
pub async fn claim_submission(db: &Db, id: &str, now: i64, lease_ms: i64, window_ms: i64, per_window: i64) -> AppResult<(bool, bool)> {
    let changes = db
        .batch(vec![
            db.stmt(
                "UPDATE tasks SET lease_until = ?2 + ?3, updated_at = ?2 WHERE id = ?1 AND state = 'queued' \
                 AND (lease_until IS NULL OR lease_until < ?2) AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)",
                &[text(id), num(now), num(lease_ms)],
            )?,
            db.stmt(
                "INSERT INTO kie_submits (at, task_id) SELECT ?2, ?1 WHERE changes() = 1 \
                 AND (SELECT COUNT(*) FROM kie_submits WHERE at > ?2 - ?3) < ?4",
                &[text(id), num(now), num(window_ms), num(per_window)],
            )?,
            db.stmt("DELETE FROM kie_submits WHERE at < ?1 - 3600000", &[num(now)])?,
        ])
        .await?;
    Ok((changes.first() == Some(&1), changes.get(1) == Some(&1)))
}

/// When the next create slot of the account window opens (ms), if it is full.
pub async fn next_slot_at(db: &Db, now: i64, window_ms: i64, per_window: i64) -> AppResult<Option<i64>> {
    #[derive(Deserialize)]
    struct At {
        at: i64,
    }
    let stmt = db.stmt(
        "SELECT at FROM kie_submits WHERE at > ?1 - ?2 ORDER BY at DESC LIMIT 1 OFFSET ?3",
        &[num(now), num(window_ms), num(per_window - 1)],
    )?;
    Ok(db.first::<At>(stmt).await?.map(|a| a.at + window_ms))
}

/// Gives the lease back and sets when to try again.
pub async fn defer_submission(db: &Db, id: &str, now: i64, next_attempt_at: i64, count_attempt: bool) -> AppResult<()> {
    let stmt = db.stmt(
        "UPDATE tasks SET lease_until = NULL, next_attempt_at = ?2, attempts = attempts + ?4, updated_at = ?3 \
         WHERE id = ?1 AND state = 'queued'",
        &[text(id), num(next_attempt_at), num(now), num(i64::from(count_attempt))],
    )?;
    db.run(stmt).await.map(|_| ())
}

pub async fn mark_submitted(db: &Db, id: &str, provider_task_id: &str, now: i64, deadline_at: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "UPDATE tasks SET state = 'submitted', provider_task_id = ?2, submitted_at = ?3, deadline_at = ?4, lease_until = NULL, \
         attempts = attempts + 1, checked_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 'queued'",
        &[text(id), text(provider_task_id), num(now), num(deadline_at)],
    )?;
    Ok(db.run(stmt).await? == 1)
}

pub async fn mark_generating(db: &Db, id: &str, now: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "UPDATE tasks SET state = 'generating', updated_at = ?2 WHERE id = ?1 AND state = 'submitted'",
        &[text(id), num(now)],
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// Takes the right to ask Kie about a task now: at most one refresh per task
/// per `interval_ms`, however many clients poll.
/// A callback may also claim it when the only "check" so far was the stamp
/// set at submission (`after_callback`).
pub async fn claim_refresh(db: &Db, id: &str, now: i64, interval_ms: i64, after_callback: bool) -> AppResult<bool> {
    let stmt = db.stmt(
        "UPDATE tasks SET checked_at = ?2 WHERE id = ?1 AND state IN ('submitted','generating') \
         AND (checked_at IS NULL OR checked_at <= ?2 - ?3 OR (?4 = 1 AND checked_at = submitted_at))",
        &[text(id), num(now), num(interval_ms), num(i64::from(after_callback))],
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// Succeeds the task and captures its reservation, exactly once.
pub async fn finish_success(db: &Db, id: &str, results_json: &str, now: i64) -> AppResult<bool> {
    let changes = db
        .batch(vec![
            db.stmt(
                &format!(
                    "UPDATE tasks SET state = 'succeeded', results = ?2, error_code = NULL, error_message = NULL, \
                     lease_until = NULL, updated_at = ?3, completed_at = ?3 WHERE id = ?1 AND state IN {ACTIVE_STATES_SQL}"
                ),
                &[text(id), text(results_json), num(now)],
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, actor, created_at) \
                 SELECT u.id, t.id, 'capture', 0, u.credits, 'system', ?2 FROM tasks t JOIN users u ON u.id = t.user_id \
                 WHERE t.id = ?1 AND changes() = 1",
                &[text(id), num(now)],
            )?,
        ])
        .await?;
    Ok(changes.first() == Some(&1))
}

/// Fails the task and gives its credits back, exactly once.
pub async fn finish_failure(db: &Db, id: &str, failure: TaskFailure, now: i64) -> AppResult<bool> {
    let changes = db
        .batch(vec![
            db.stmt(
                &format!(
                    "UPDATE tasks SET state = 'failed', error_code = ?2, error_message = ?3, lease_until = NULL, \
                     updated_at = ?4, completed_at = ?4 WHERE id = ?1 AND state IN {ACTIVE_STATES_SQL}"
                ),
                &[text(id), text(failure.code()), text(failure.message()), num(now)],
            )?,
            db.stmt(
                "UPDATE users SET credits = credits + (SELECT credits FROM tasks WHERE id = ?1), updated_at = ?2 \
                 WHERE id = (SELECT user_id FROM tasks WHERE id = ?1) AND changes() = 1",
                &[text(id), num(now)],
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT u.id, t.id, 'release', t.credits, u.credits, ?2, 'system', ?3 FROM tasks t JOIN users u ON u.id = t.user_id \
                 WHERE t.id = ?1 AND changes() = 1",
                &[text(id), text(failure.code()), num(now)],
            )?,
        ])
        .await?;
    Ok(changes.first() == Some(&1))
}

// ---- scheduled work ----

#[derive(Debug, Deserialize)]
pub struct TaskRef {
    pub id: String,
}

/// Queued tasks whose submission is due, oldest first.
pub async fn due_queued(db: &Db, now: i64, limit: u32) -> AppResult<Vec<TaskRef>> {
    let stmt = db.stmt(
        "SELECT id FROM tasks WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) \
         AND (lease_until IS NULL OR lease_until < ?1) ORDER BY created_at, id LIMIT ?2",
        &[num(now), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

/// Submitted or generating tasks not checked for `quiet_ms`, or past their deadline.
pub async fn quiet_active(db: &Db, now: i64, quiet_ms: i64, limit: u32) -> AppResult<Vec<TaskRef>> {
    let stmt = db.stmt(
        "SELECT id FROM tasks WHERE state IN ('submitted','generating') \
         AND (checked_at IS NULL OR checked_at <= ?1 - ?2 OR deadline_at < ?1) ORDER BY created_at, id LIMIT ?3",
        &[num(now), num(quiet_ms), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

/// Forgets per-user rate windows older than an hour (they only matter for a minute).
pub async fn prune_rate_windows(db: &Db, now: i64) -> AppResult<usize> {
    let stmt = db.stmt("DELETE FROM rate_windows WHERE window_start < ?1 - 3600000", &[num(now)])?;
    db.run(stmt).await
}

pub async fn record_cron_run(db: &Db, started: i64, finished: i64, summary: &str) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO cron_runs (started_at, finished_at, summary) VALUES (?1, ?2, ?3)",
        &[num(started), num(finished), text(summary)],
    )?;
    db.run(stmt).await.map(|_| ())
}

// ---- ledger ----

pub async fn ledger(db: &Db, user_id: &str, limit: u32, before_id: Option<i64>) -> AppResult<Vec<LedgerRow>> {
    let stmt = db.stmt(
        "SELECT id, task_id, kind, amount, balance_after, reason, actor, created_at FROM ledger \
         WHERE user_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        &[text(user_id), num(before_id.unwrap_or(i64::MAX / 2)), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

pub async fn task_by_provider_id(db: &Db, provider_task_id: &str) -> AppResult<Option<TaskRecord>> {
    let stmt = db.stmt(&format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.provider_task_id = ?1"), &[text(provider_task_id)])?;
    db.first(stmt).await
}

/// Unfinished tasks older than the deadline, oldest first (admin `stuck=true`).
pub async fn stuck_tasks(db: &Db, older_than: i64, limit: u32) -> AppResult<Vec<TaskRecord>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.state IN {ACTIVE_STATES_SQL} AND t.created_at < ?1 \
             ORDER BY t.created_at, t.id LIMIT ?2"
        ),
        &[num(older_than), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

pub async fn audit(db: &Db, actor: &str, action: &str, target: &str, detail: &str, now: i64) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO audit_log (actor, action, target, detail, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[text(actor), text(action), text(target), text(detail), num(now)],
    )?;
    db.run(stmt).await.map(|_| ())
}

#[derive(Debug, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// Admin actions, newest first, optionally for one target (a user or task id).
pub async fn audit_log(db: &Db, target: Option<&str>, limit: u32, before_id: Option<i64>) -> AppResult<Vec<AuditRow>> {
    let before = num(before_id.unwrap_or(i64::MAX / 2));
    let stmt = match target {
        Some(t) => db.stmt(
            "SELECT id, actor, action, target, detail, created_at FROM audit_log WHERE target = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            &[text(t), before, num(i64::from(limit))],
        )?,
        None => db.stmt(
            "SELECT id, actor, action, target, detail, created_at FROM audit_log WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            &[before, num(i64::from(limit))],
        )?,
    };
    db.all(stmt).await
}

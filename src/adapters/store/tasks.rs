//! Tasks: reading them, reserving a task's price together with inserting it,
//! the submission queue and Kie's create window, and every state change.

use super::super::d1::{num, opt_text, text, Db};
use super::states_in;
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::{IdempotencyKey, ProviderTaskId, TaskId, UserId};
use crate::domain::task::{StoredResult, Task, TaskFailure, TaskState, Transition};
use serde::Deserialize;

const TASK_COLUMNS: &str = "t.id, t.user_id, t.model, t.prompt, t.aspect_ratio, t.resolution, t.output_format, t.inputs, \
    t.results, t.state, t.credits, t.error_code, t.error_message, t.provider_task_id, t.callback_token, t.request_hash, \
    t.attempts, t.checked_at, t.submitted_at, t.deadline_at, t.created_at, t.updated_at, t.completed_at";

pub async fn by_id(db: &Db, id: &TaskId) -> AppResult<Option<Task>> {
    let stmt = db.stmt(&format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = ?1"), &[text(id.as_str())])?;
    db.first(stmt).await
}

/// A task that must exist (it was just written or read).
pub async fn existing(db: &Db, id: &TaskId) -> AppResult<Task> {
    by_id(db, id).await?.ok_or_else(|| AppError::internal(format!("task {id} vanished")))
}

/// A task as seen by the holder of `key_hash`: one indexed query that also
/// authenticates. `None` for a bad key, a missing task or someone else's task.
pub async fn for_key(db: &Db, key_hash: &str, id: &TaskId) -> AppResult<Option<Task>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM api_keys k JOIN tasks t ON t.user_id = k.user_id \
             WHERE k.key_hash = ?1 AND k.revoked_at IS NULL AND t.id = ?2"
        ),
        &[text(key_hash), text(id.as_str())],
    )?;
    db.first(stmt).await
}

/// A task as seen by the holder of a live session: the same one query that
/// also authenticates, for cookie-signed-in browsers polling their task.
pub async fn for_session(db: &Db, session_hash: &str, id: &TaskId, now: i64) -> AppResult<Option<Task>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM sessions s JOIN tasks t ON t.user_id = s.user_id \
             WHERE s.id_hash = ?1 AND s.expires_at > ?3 AND t.id = ?2"
        ),
        &[text(session_hash), text(id.as_str()), num(now)],
    )?;
    db.first(stmt).await
}

/// What a callback needs of its task: where it is, whose it is, and the
/// token its callback URL must carry (five columns, not the whole row).
#[derive(Debug, Deserialize)]
pub struct CallbackTarget {
    pub id: TaskId,
    pub user_id: UserId,
    pub state: TaskState,
    pub provider_task_id: Option<ProviderTaskId>,
    pub callback_token: String,
}

const CALLBACK_COLUMNS: &str = "id, user_id, state, provider_task_id, callback_token";

pub async fn callback_target(db: &Db, id: &TaskId) -> AppResult<Option<CallbackTarget>> {
    db.first(db.stmt(&format!("SELECT {CALLBACK_COLUMNS} FROM tasks WHERE id = ?1"), &[text(id.as_str())])?).await
}

pub async fn callback_target_by_provider_id(db: &Db, provider_task_id: &ProviderTaskId) -> AppResult<Option<CallbackTarget>> {
    db.first(db.stmt(&format!("SELECT {CALLBACK_COLUMNS} FROM tasks WHERE provider_task_id = ?1"), &[text(provider_task_id.as_str())])?)
        .await
}

pub async fn by_idempotency_key(db: &Db, user_id: &UserId, key: &IdempotencyKey) -> AppResult<Option<Task>> {
    let stmt = db.stmt(
        &format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.user_id = ?1 AND t.idempotency_key = ?2"),
        &[text(user_id.as_str()), text(key.as_str())],
    )?;
    db.first(stmt).await
}

/// A page of tasks, newest first, optionally one user's and in one state.
pub async fn list(
    db: &Db,
    user_id: Option<&UserId>,
    state: Option<TaskState>,
    limit: u32,
    before: Option<(i64, String)>,
) -> AppResult<Vec<Task>> {
    let (ts, id) = before.unwrap_or((i64::MAX / 2, "\u{10FFFF}".into()));
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE (t.created_at, t.id) < (?1, ?2)");
    let mut args = vec![num(ts), text(&id), num(i64::from(limit))];
    if let Some(u) = user_id {
        args.push(text(u.as_str()));
        sql.push_str(&format!(" AND t.user_id = ?{}", args.len()));
    }
    if let Some(st) = state {
        sql.push_str(&format!(" AND {}", states_in("t.state", &[st], &mut args)));
    }
    sql.push_str(" ORDER BY t.created_at DESC, t.id DESC LIMIT ?3");
    let stmt = db.stmt(&sql, &args)?;
    db.all(stmt).await
}

/// Unfinished tasks created before `older_than`, oldest first (admin `stuck=true`).
pub async fn stuck(db: &Db, older_than: i64, limit: u32) -> AppResult<Vec<Task>> {
    let mut args = vec![num(older_than), num(i64::from(limit))];
    let active = states_in("t.state", &TaskState::ACTIVE, &mut args);
    let stmt = db.stmt(
        &format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE {active} AND t.created_at < ?1 ORDER BY t.created_at, t.id LIMIT ?2"),
        &args,
    )?;
    db.all(stmt).await
}

/// What became of a reservation.
pub enum Reservation {
    Reserved,
    /// The balance or the cap of unfinished tasks did not allow it.
    Refused {
        balance: i64,
        active: i64,
    },
    /// A task with this Idempotency-Key exists (another request won the race).
    DuplicateKey,
}

/// Debits the price and inserts the queued task in one transaction,
/// conditional on the balance, the cap of unfinished tasks and the
/// Idempotency-Key being new: there is no check-then-debit.
/// Invariant: users.credits = SUM(ledger.amount) for the user, before and after.
pub async fn reserve(db: &Db, task: &Task, idempotency_key: Option<&IdempotencyKey>, max_active: i64) -> AppResult<Reservation> {
    let key = opt_text(idempotency_key.map(IdempotencyKey::as_str));
    let inputs = serde_json::to_string(&task.inputs).map_err(|e| AppError::internal(format!("inputs json: {e}")))?;
    let mut debit_args = vec![num(task.credits), text(task.user_id.as_str()), num(task.created_at), num(max_active), key.clone()];
    let active = states_in("state", &TaskState::ACTIVE, &mut debit_args);
    let stmts = vec![
        db.stmt(
            &format!(
                "UPDATE users SET credits = credits - ?1, updated_at = ?3 WHERE id = ?2 AND credits >= ?1 \
                 AND (SELECT COUNT(*) FROM tasks WHERE user_id = ?2 AND {active}) < ?4 \
                 AND NOT EXISTS (SELECT 1 FROM tasks WHERE user_id = ?2 AND idempotency_key = ?5)"
            ),
            &debit_args,
        )?,
        db.stmt(
            "INSERT INTO tasks (id, user_id, model, prompt, aspect_ratio, resolution, output_format, inputs, state, credits, \
             callback_token, idempotency_key, request_hash, created_at, updated_at, deadline_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?15, ?9, ?10, ?11, ?12, ?13, ?13, ?14 WHERE changes() = 1",
            &[
                text(task.id.as_str()),
                text(task.user_id.as_str()),
                text(&task.model),
                text(&task.prompt),
                opt_text(task.aspect_ratio.as_deref()),
                opt_text(task.resolution.as_deref()),
                opt_text(task.output_format.as_deref()),
                text(&inputs),
                num(task.credits),
                text(&task.callback_token),
                key.clone(),
                opt_text(task.request_hash.as_deref()),
                num(task.created_at),
                num(task.deadline_at.unwrap_or(task.created_at)),
                text(TaskState::Queued.as_str()),
            ],
        )?,
        db.stmt(
            "INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, actor, created_at) \
             SELECT id, ?2, 'reserve', -?3, credits, 'user', ?4 FROM users WHERE id = ?1 AND changes() = 1",
            &[text(task.user_id.as_str()), text(task.id.as_str()), num(task.credits), num(task.created_at)],
        )?,
    ];
    if db.batch(stmts).await?.first() == Some(&1) {
        return Ok(Reservation::Reserved);
    }
    let why = standing(db, &task.user_id, idempotency_key).await?;
    Ok(if why.duplicate { Reservation::DuplicateKey } else { Reservation::Refused { balance: why.credits, active: why.active } })
}

/// What decides a reservation, read without taking it: checked before any
/// upload is stored, so a create that will be refused leaves nothing behind.
pub struct Standing {
    pub credits: i64,
    pub active: i64,
    /// A task with this Idempotency-Key exists.
    pub duplicate: bool,
}

pub async fn standing(db: &Db, user_id: &UserId, idempotency_key: Option<&IdempotencyKey>) -> AppResult<Standing> {
    #[derive(Deserialize)]
    struct Row {
        credits: i64,
        active: i64,
        duplicate: i64,
    }
    let mut args = vec![text(user_id.as_str()), opt_text(idempotency_key.map(IdempotencyKey::as_str))];
    let active = states_in("state", &TaskState::ACTIVE, &mut args);
    let stmt = db.stmt(
        &format!(
            "SELECT credits, (SELECT COUNT(*) FROM tasks WHERE user_id = ?1 AND {active}) AS active, \
             EXISTS (SELECT 1 FROM tasks WHERE user_id = ?1 AND idempotency_key = ?2) AS duplicate FROM users WHERE id = ?1"
        ),
        &args,
    )?;
    let row = db.first::<Row>(stmt).await?.unwrap_or(Row { credits: 0, active: 0, duplicate: 0 });
    Ok(Standing { credits: row.credits, active: row.active, duplicate: row.duplicate == 1 })
}

/// Takes the right to submit a queued task now: a lease on the task and a slot
/// in the account-wide Kie create window, in one transaction.
/// Returns (lease won, slot won).
pub async fn claim_submission(db: &Db, id: &TaskId, now: i64, lease_ms: i64, window_ms: i64, per_window: i64) -> AppResult<(bool, bool)> {
    let changes = db
        .batch(vec![
            db.stmt(
                "UPDATE tasks SET lease_until = ?2 + ?3, updated_at = ?2 WHERE id = ?1 AND state = ?4 \
                 AND (lease_until IS NULL OR lease_until < ?2) AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)",
                &[text(id.as_str()), num(now), num(lease_ms), text(TaskState::Queued.as_str())],
            )?,
            db.stmt(
                "INSERT INTO kie_submits (at, task_id) SELECT ?2, ?1 WHERE changes() = 1 \
                 AND (SELECT COUNT(*) FROM kie_submits WHERE at > ?2 - ?3) < ?4",
                &[text(id.as_str()), num(now), num(window_ms), num(per_window)],
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
pub async fn defer_submission(db: &Db, id: &TaskId, now: i64, next_attempt_at: i64, count_attempt: bool) -> AppResult<()> {
    let stmt = db.stmt(
        "UPDATE tasks SET lease_until = NULL, next_attempt_at = ?2, attempts = attempts + ?4, updated_at = ?3 \
         WHERE id = ?1 AND state = ?5",
        &[text(id.as_str()), num(next_attempt_at), num(now), num(i64::from(count_attempt)), text(TaskState::Queued.as_str())],
    )?;
    db.run(stmt).await.map(|_| ())
}

/// `UPDATE tasks SET state = <to>, <set> WHERE id = ?1 AND state IN <from>`,
/// with `set` using ?2… for `args`.
fn transition_sql(t: Transition, set: &str, args: &mut Vec<wasm_bindgen::JsValue>) -> String {
    args.push(text(t.to.as_str()));
    let to = args.len();
    let from = states_in("state", t.from, args);
    format!("UPDATE tasks SET state = ?{to}, {set} WHERE id = ?1 AND {from}")
}

/// queued → submitted with Kie's task id; false if someone else moved it first.
pub async fn mark_submitted(db: &Db, id: &TaskId, provider_task_id: &ProviderTaskId, now: i64, deadline_at: i64) -> AppResult<bool> {
    let mut args = vec![text(id.as_str()), text(provider_task_id.as_str()), num(now), num(deadline_at)];
    let sql = transition_sql(
        Transition::SUBMIT,
        "provider_task_id = ?2, submitted_at = ?3, deadline_at = ?4, lease_until = NULL, attempts = attempts + 1, \
         checked_at = ?3, updated_at = ?3",
        &mut args,
    );
    Ok(db.run(db.stmt(&sql, &args)?).await? == 1)
}

/// submitted → generating.
pub async fn mark_generating(db: &Db, id: &TaskId, now: i64) -> AppResult<bool> {
    let mut args = vec![text(id.as_str()), num(now)];
    let sql = transition_sql(Transition::START, "updated_at = ?2", &mut args);
    Ok(db.run(db.stmt(&sql, &args)?).await? == 1)
}

/// Takes the right to ask Kie about a task now: at most one refresh per task
/// per `interval_ms`, however many clients poll. A callback may also claim it
/// when the only "check" so far was the stamp set at submission (`after_callback`).
pub async fn claim_refresh(db: &Db, id: &TaskId, now: i64, interval_ms: i64, after_callback: bool) -> AppResult<bool> {
    let mut args = vec![text(id.as_str()), num(now), num(interval_ms), num(i64::from(after_callback))];
    let at_kie = states_in("state", &TaskState::AT_KIE, &mut args);
    let stmt = db.stmt(
        &format!(
            "UPDATE tasks SET checked_at = ?2 WHERE id = ?1 AND {at_kie} \
             AND (checked_at IS NULL OR checked_at <= ?2 - ?3 OR (?4 = 1 AND checked_at = submitted_at))"
        ),
        &args,
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// Succeeds the task and captures its reservation, exactly once.
pub async fn finish_success(db: &Db, id: &TaskId, results: &[StoredResult], now: i64) -> AppResult<bool> {
    let results = serde_json::to_string(results).map_err(|e| AppError::internal(format!("results json: {e}")))?;
    let mut args = vec![text(id.as_str()), text(&results), num(now)];
    let sql = transition_sql(
        Transition::SUCCEED,
        "results = ?2, error_code = NULL, error_message = NULL, lease_until = NULL, updated_at = ?3, completed_at = ?3",
        &mut args,
    );
    let changes = db
        .batch(vec![
            db.stmt(&sql, &args)?,
            // Capture: a zero-amount row; the price was taken at reservation.
            db.stmt(
                "INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, actor, created_at) \
                 SELECT u.id, t.id, 'capture', 0, u.credits, 'system', ?2 FROM tasks t JOIN users u ON u.id = t.user_id \
                 WHERE t.id = ?1 AND changes() = 1",
                &[text(id.as_str()), num(now)],
            )?,
        ])
        .await?;
    Ok(changes.first() == Some(&1))
}

/// Fails the task and gives its credits back, exactly once.
/// Invariant: the release row and the balance change happen only if this call
/// moved the task out of an active state (`changes() = 1`).
pub async fn finish_failure(db: &Db, id: &TaskId, failure: TaskFailure, now: i64) -> AppResult<bool> {
    let mut args = vec![text(id.as_str()), text(failure.code()), text(failure.message()), num(now)];
    let sql = transition_sql(
        Transition::FAIL,
        "error_code = ?2, error_message = ?3, lease_until = NULL, updated_at = ?4, completed_at = ?4",
        &mut args,
    );
    let changes = db
        .batch(vec![
            db.stmt(&sql, &args)?,
            db.stmt(
                "UPDATE users SET credits = credits + (SELECT credits FROM tasks WHERE id = ?1), updated_at = ?2 \
                 WHERE id = (SELECT user_id FROM tasks WHERE id = ?1) AND changes() = 1",
                &[text(id.as_str()), num(now)],
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT u.id, t.id, 'release', t.credits, u.credits, ?2, 'system', ?3 FROM tasks t JOIN users u ON u.id = t.user_id \
                 WHERE t.id = ?1 AND changes() = 1",
                &[text(id.as_str()), text(failure.code()), num(now)],
            )?,
        ])
        .await?;
    Ok(changes.first() == Some(&1))
}

/// Queued tasks whose submission is due, oldest first.
pub async fn due_queued(db: &Db, now: i64, limit: u32) -> AppResult<Vec<Task>> {
    let stmt = db.stmt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.state = ?3 AND (t.next_attempt_at IS NULL OR t.next_attempt_at <= ?1) \
             AND (t.lease_until IS NULL OR t.lease_until < ?1) ORDER BY t.created_at, t.id LIMIT ?2"
        ),
        &[num(now), num(i64::from(limit)), text(TaskState::Queued.as_str())],
    )?;
    db.all(stmt).await
}

/// Tasks at Kie not checked for `quiet_ms`, or past their deadline, oldest first.
pub async fn quiet_at_kie(db: &Db, now: i64, quiet_ms: i64, limit: u32) -> AppResult<Vec<Task>> {
    let mut args = vec![num(now), num(quiet_ms), num(i64::from(limit))];
    let at_kie = states_in("t.state", &TaskState::AT_KIE, &mut args);
    let stmt = db.stmt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE {at_kie} \
             AND (t.checked_at IS NULL OR t.checked_at <= ?1 - ?2 OR t.deadline_at < ?1) ORDER BY t.created_at, t.id LIMIT ?3"
        ),
        &args,
    )?;
    db.all(stmt).await
}

//! What operators read and the scheduled job keeps: the audit log, cron runs,
//! the applied migrations, and housekeeping.

use super::super::d1::{num, text, Db, Stmt};
use crate::domain::error::AppResult;
use serde::Deserialize;

pub async fn audit(db: &Db, action: &str, target: &str, detail: &str, now: i64) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO audit_log (actor, action, target, detail, created_at) VALUES ('admin', ?1, ?2, ?3, ?4)",
        &[text(action), text(target), text(detail), num(now)],
    )?;
    db.run(stmt).await.map(|_| ())
}

#[derive(Debug, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// Admin actions, newest first, optionally for one target (a user or task id).
pub async fn audit_log(db: &Db, target: Option<&str>, limit: u32, before_id: Option<i64>) -> AppResult<Vec<AuditEntry>> {
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

pub async fn record_cron_run(db: &Db, started: i64, finished: i64, summary: &str) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO cron_runs (started_at, finished_at, summary) VALUES (?1, ?2, ?3)",
        &[num(started), num(finished), text(summary)],
    )?;
    db.run(stmt).await.map(|_| ())
}

#[derive(Debug, Deserialize)]
pub struct CronRun {
    pub finished_at: i64,
    pub summary: String,
}

pub async fn last_cron_run(db: &Db) -> AppResult<Option<CronRun>> {
    db.first(db.stmt("SELECT finished_at, summary FROM cron_runs ORDER BY id DESC LIMIT 1", &[])?).await
}

/// The migrations wrangler recorded as applied, in order.
pub async fn applied_migrations(db: &Db) -> AppResult<Vec<String>> {
    #[derive(Deserialize)]
    struct Migration {
        name: String,
    }
    let stmt = db.stmt("SELECT name FROM d1_migrations ORDER BY id", &[])?;
    Ok(db.all::<Migration>(stmt).await?.into_iter().map(|m| m.name).collect())
}

/// The statement that forgets per-user rate windows older than an hour (they
/// only matter for a minute).
pub fn forget_rate_windows(db: &Db, now: i64) -> AppResult<Stmt> {
    db.stmt("DELETE FROM rate_windows WHERE window_start < ?1 - 3600000", &[num(now)])
}

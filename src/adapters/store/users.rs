//! Users, their API keys (hashes only), their credit ledger, and the per-user
//! rate window.

use super::super::d1::{num, text, Db};
use crate::domain::error::AppResult;
use crate::domain::ids::{TaskId, UserId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub credits: i64,
    /// Credits a refund or dispute could not take back (spent already); while
    /// above zero the user cannot create. Every query of users selects it.
    pub owed: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub task_id: Option<TaskId>,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub reason: Option<String>,
    pub actor: String,
    pub created_at: i64,
}

pub async fn by_key(db: &Db, key_hash: &str) -> AppResult<Option<User>> {
    let stmt = db.stmt(
        "SELECT u.id, u.name, u.credits, u.owed, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
        &[text(key_hash)],
    )?;
    db.first(stmt).await
}

pub async fn by_id(db: &Db, id: &UserId) -> AppResult<Option<User>> {
    let stmt = db.stmt("SELECT id, name, credits, owed, created_at FROM users WHERE id = ?1", &[text(id.as_str())])?;
    db.first(stmt).await
}

pub async fn list(db: &Db, limit: u32, before: Option<(i64, String)>) -> AppResult<Vec<User>> {
    let (ts, id) = before.unwrap_or((i64::MAX / 2, "\u{10FFFF}".into()));
    let stmt = db.stmt(
        "SELECT id, name, credits, owed, created_at FROM users WHERE (created_at, id) < (?1, ?2) \
         ORDER BY created_at DESC, id DESC LIMIT ?3",
        &[num(ts), text(&id), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

/// Creates a user with one key and its starting credits as a ledger grant.
pub async fn create(db: &Db, id: &UserId, name: &str, credits: i64, key_hash: &str, now: i64) -> AppResult<()> {
    let id = id.as_str();
    let mut stmts = vec![
        db.stmt(
            "INSERT INTO users (id, name, credits, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            &[text(id), text(name), num(credits), num(now)],
        )?,
        db.stmt("INSERT INTO api_keys (key_hash, user_id, created_at) VALUES (?1, ?2, ?3)", &[text(key_hash), text(id), num(now)])?,
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

/// Grants (positive) or takes (negative) credits with its ledger row and audit
/// entry, in one transaction; `None` when the user does not exist or the
/// balance would fall below zero.
pub async fn adjust_credits(db: &Db, user_id: &UserId, amount: i64, reason: &str, now: i64) -> AppResult<Option<i64>> {
    let kind = if amount >= 0 { "grant" } else { "adjust" };
    let id = user_id.as_str();
    let changes = db
        .batch(vec![
            db.stmt(
                "UPDATE users SET credits = credits + ?2, updated_at = ?3 WHERE id = ?1 AND credits + ?2 >= 0",
                &[text(id), num(amount), num(now)],
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT id, ?2, ?3, credits, ?4, 'admin', ?5 FROM users WHERE id = ?1 AND changes() = 1",
                &[text(id), text(kind), num(amount), text(reason), num(now)],
            )?,
            db.stmt(
                "INSERT INTO audit_log (actor, action, target, detail, created_at) \
                 SELECT 'admin', 'credits.change', ?1, ?2, ?3 WHERE changes() = 1",
                &[text(id), text(&format!("{amount:+} ({reason})")), num(now)],
            )?,
        ])
        .await?;
    if changes.first() != Some(&1) {
        return Ok(None);
    }
    Ok(by_id(db, user_id).await?.map(|u| u.credits))
}

/// Revokes every key of the user and stores a new one; false if no such user.
pub async fn rotate_key(db: &Db, user_id: &UserId, key_hash: &str, now: i64) -> AppResult<bool> {
    let id = user_id.as_str();
    let changes = db
        .batch(vec![
            db.stmt("UPDATE api_keys SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL", &[text(id), num(now)])?,
            db.stmt(
                "INSERT INTO api_keys (key_hash, user_id, created_at) SELECT ?2, id, ?3 FROM users WHERE id = ?1",
                &[text(id), text(key_hash), num(now)],
            )?,
            db.stmt(
                "INSERT INTO audit_log (actor, action, target, created_at) SELECT 'admin', 'key.rotate', id, ?2 FROM users WHERE id = ?1",
                &[text(id), num(now)],
            )?,
        ])
        .await?;
    Ok(changes.get(1) == Some(&1))
}

/// The user's credit movements, newest first.
pub async fn ledger(db: &Db, user_id: &UserId, limit: u32, before_id: Option<i64>) -> AppResult<Vec<LedgerEntry>> {
    let stmt = db.stmt(
        "SELECT id, task_id, kind, amount, balance_after, reason, actor, created_at FROM ledger \
         WHERE user_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        &[text(user_id.as_str()), num(before_id.unwrap_or(i64::MAX / 2)), num(i64::from(limit))],
    )?;
    db.all(stmt).await
}

/// Counts one create in the user's current minute; returns the count so far.
pub async fn hit_rate_window(db: &Db, user_id: &UserId, window_start: i64) -> AppResult<i64> {
    #[derive(Deserialize)]
    struct Count {
        count: i64,
    }
    let stmt = db.stmt(
        "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?1, ?2, 1) \
         ON CONFLICT (user_id, window_start) DO UPDATE SET count = count + 1 RETURNING count",
        &[text(user_id.as_str()), num(window_start)],
    )?;
    Ok(db.first::<Count>(stmt).await?.map(|c| c.count).unwrap_or(1))
}

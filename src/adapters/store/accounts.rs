//! People who sign in: identities (one account per issuer and subject),
//! sessions, sign-ins in flight, new people waiting for the human check, the
//! per-IP limit on new accounts, and self-service API keys. Cookie tokens are
//! stored as hashes only.

use super::super::d1::{num, opt_text, text, Db, Stmt};
use super::users::User;
use crate::domain::error::AppResult;
use crate::domain::ids::UserId;
use crate::domain::oidc::LoginSecrets;
use crate::domain::session::token_hash;
use serde::Deserialize;

/// A sign-in between `/auth/login` and `/auth/callback`.
#[derive(Debug, Deserialize)]
pub struct LoginAttempt {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    pub return_to: String,
    pub expires_at: i64,
}

/// The per-address limit on starting sign-ins: its bucket (a keyed hash of
/// the address), the window it counts in, and how many the window allows.
pub struct LoginLimit<'a> {
    pub bucket: &'a str,
    pub window_start: i64,
    pub max: i64,
}

/// Stores a sign-in's secrets; with a `limit`, only while the address is
/// under it (counted and checked in the same batch). False when refused.
pub async fn begin_login(
    db: &Db,
    secrets: &LoginSecrets,
    return_to: &str,
    now: i64,
    expires_at: i64,
    limit: Option<&LoginLimit<'_>>,
) -> AppResult<bool> {
    // The per-user create limit's table, keyed here by the address's bucket.
    let bucket = limit.map(|l| format!("login:{}", l.bucket.get(..32).unwrap_or(l.bucket)));
    let window = limit.map_or(0, |l| l.window_start);
    let mut statements = Vec::new();
    if let Some(bucket) = &bucket {
        statements.push(db.stmt(
            "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?1, ?2, 1) \
             ON CONFLICT (user_id, window_start) DO UPDATE SET count = count + 1",
            &[text(bucket), num(window)],
        )?);
    }
    statements.push(db.stmt(
        "INSERT INTO login_attempts (id_hash, state, nonce, code_verifier, return_to, created_at, expires_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
         WHERE ?8 IS NULL OR (SELECT count FROM rate_windows WHERE user_id = ?8 AND window_start = ?9) <= ?10",
        &[
            text(&token_hash(&secrets.login_id)),
            text(&secrets.state),
            text(&secrets.nonce),
            text(&secrets.code_verifier),
            text(return_to),
            num(now),
            num(expires_at),
            opt_text(bucket.as_deref()),
            num(window),
            num(limit.map_or(0, |l| l.max)),
        ],
    )?);
    let changes = db.batch(statements).await?;
    Ok(changes.last() == Some(&1))
}

/// Takes the sign-in out, exactly once: the row is deleted by the statement
/// that reads it, so a replayed callback finds nothing. `None` when it is
/// unknown, already used or expired.
pub async fn take_login(db: &Db, id_hash: &str, now: i64) -> AppResult<Option<LoginAttempt>> {
    let stmt = db.stmt(
        "DELETE FROM login_attempts WHERE id_hash = ?1 RETURNING state, nonce, code_verifier, return_to, expires_at",
        &[text(id_hash)],
    )?;
    Ok(db.first::<LoginAttempt>(stmt).await?.filter(|a| a.expires_at > now))
}

/// The account of a person at a provider, if they have one.
pub async fn identity_user(db: &Db, issuer: &str, subject: &str) -> AppResult<Option<UserId>> {
    #[derive(Deserialize)]
    struct Row {
        user_id: UserId,
    }
    let stmt = db.stmt("SELECT user_id FROM identities WHERE issuer = ?1 AND subject = ?2", &[text(issuer), text(subject)])?;
    Ok(db.first::<Row>(stmt).await?.map(|r| r.user_id))
}

/// Everything needed to open an account for a person signing in for the first time.
pub struct NewAccount<'a> {
    pub user_id: &'a UserId,
    pub name: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub starter_credits: i64,
    pub ip_hash: &'a str,
    pub window_start: i64,
    pub ip_limit: i64,
    pub session_hash: &'a str,
    pub session_expires_at: i64,
    pub now: i64,
}

pub enum AccountOutcome {
    /// This call created the account, its grant and its first session.
    Created,
    /// The person already has an account (another callback won the race).
    Exists(UserId),
    /// This IP opened its allowance of accounts in the current window.
    IpLimited,
}

/// Opens the account in one transaction: the user (only if the identity is
/// new and the IP is under its limit), the identity, the IP count, the
/// starter grant and the first session, each conditional on the one before
/// (`changes() = 1`). D1 runs a batch alone, so two callbacks racing for the
/// same new person make one user and one grant; the loser signs in to it.
/// Invariant: users.credits = SUM(ledger.amount) — the user starts with
/// `starter_credits` and the grant row of the same amount is written with it.
pub async fn create_account(db: &Db, a: &NewAccount<'_>) -> AppResult<AccountOutcome> {
    let uid = a.user_id.as_str();
    let changes = db
        .batch(vec![
            db.stmt(
                "INSERT INTO users (id, name, credits, created_at, updated_at) SELECT ?1, ?2, ?3, ?4, ?4 \
                 WHERE NOT EXISTS (SELECT 1 FROM identities WHERE issuer = ?5 AND subject = ?6) \
                 AND COALESCE((SELECT count FROM signup_windows WHERE ip_hash = ?7 AND window_start = ?8), 0) < ?9",
                &[
                    text(uid),
                    text(a.name),
                    num(a.starter_credits),
                    num(a.now),
                    text(a.issuer),
                    text(a.subject),
                    text(a.ip_hash),
                    num(a.window_start),
                    num(a.ip_limit),
                ],
            )?,
            db.stmt(
                "INSERT INTO identities (issuer, subject, user_id, email, created_at) SELECT ?1, ?2, ?3, ?4, ?5 WHERE changes() = 1",
                &[text(a.issuer), text(a.subject), text(uid), opt_text(a.email), num(a.now)],
            )?,
            db.stmt(
                "INSERT INTO signup_windows (ip_hash, window_start, count) SELECT ?1, ?2, 1 WHERE changes() = 1 \
                 ON CONFLICT (ip_hash, window_start) DO UPDATE SET count = count + 1",
                &[text(a.ip_hash), num(a.window_start)],
            )?,
            // The starter grant, once: only the call that created the user writes it.
            db.stmt(
                "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT id, 'grant', credits, credits, 'starter credits', 'system', ?2 FROM users WHERE id = ?1 AND changes() = 1",
                &[text(uid), num(a.now)],
            )?,
            db.stmt(
                "INSERT INTO sessions (id_hash, user_id, created_at, refreshed_at, expires_at) \
                 SELECT ?1, ?2, ?3, ?3, ?4 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2)",
                &[text(a.session_hash), text(uid), num(a.now), num(a.session_expires_at)],
            )?,
        ])
        .await?;
    if changes.first() == Some(&1) {
        return Ok(AccountOutcome::Created);
    }
    Ok(match identity_user(db, a.issuer, a.subject).await? {
        Some(existing) => AccountOutcome::Exists(existing),
        None => AccountOutcome::IpLimited,
    })
}

pub async fn start_session(db: &Db, id_hash: &str, user_id: &UserId, now: i64, expires_at: i64) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO sessions (id_hash, user_id, created_at, refreshed_at, expires_at) VALUES (?1, ?2, ?3, ?3, ?4)",
        &[text(id_hash), text(user_id.as_str()), num(now), num(expires_at)],
    )?;
    db.run(stmt).await.map(|_| ())
}

/// The user of a live session, with when its expiry was last pushed out.
pub async fn session_user(db: &Db, id_hash: &str, now: i64) -> AppResult<Option<(User, i64)>> {
    #[derive(Deserialize)]
    struct Row {
        id: UserId,
        name: String,
        credits: i64,
        owed: i64,
        created_at: i64,
        refreshed_at: i64,
    }
    let stmt = db.stmt(
        "SELECT u.id, u.name, u.credits, u.owed, u.created_at, s.refreshed_at FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = ?1 AND s.expires_at > ?2",
        &[text(id_hash), num(now)],
    )?;
    Ok(db
        .first::<Row>(stmt)
        .await?
        .map(|r| (User { id: r.id, name: r.name, credits: r.credits, owed: r.owed, created_at: r.created_at }, r.refreshed_at)))
}

/// Whether a session is live, without reading its user.
pub async fn session_live(db: &Db, id_hash: &str, now: i64) -> AppResult<bool> {
    let stmt = db.stmt("SELECT 1 AS one FROM sessions WHERE id_hash = ?1 AND expires_at > ?2", &[text(id_hash), num(now)])?;
    Ok(db.first::<serde_json::Value>(stmt).await?.is_some())
}

/// Pushes a live session's expiry out (the sliding window).
pub async fn slide_session(db: &Db, id_hash: &str, now: i64, expires_at: i64) -> AppResult<()> {
    let stmt = db.stmt(
        "UPDATE sessions SET refreshed_at = ?2, expires_at = ?3 WHERE id_hash = ?1 AND expires_at > ?2",
        &[text(id_hash), num(now), num(expires_at)],
    )?;
    db.run(stmt).await.map(|_| ())
}

/// Signs one browser out; true when there was such a session.
pub async fn end_session(db: &Db, id_hash: &str) -> AppResult<bool> {
    Ok(db.run(db.stmt("DELETE FROM sessions WHERE id_hash = ?1", &[text(id_hash)])?).await? > 0)
}

/// Signs a person out everywhere; how many sessions ended.
pub async fn end_all_sessions(db: &Db, user_id: &UserId) -> AppResult<usize> {
    db.run(db.stmt("DELETE FROM sessions WHERE user_id = ?1", &[text(user_id.as_str())])?).await
}

/// A new person whose ID token checked out, waiting for the human check.
#[derive(Debug, Deserialize)]
pub struct PendingSignup {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: String,
    pub return_to: String,
}

pub async fn hold_signup(db: &Db, id_hash: &str, p: &PendingSignup, now: i64, expires_at: i64) -> AppResult<()> {
    let stmt = db.stmt(
        "INSERT INTO pending_signups (id_hash, issuer, subject, email, name, return_to, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            text(id_hash),
            text(&p.issuer),
            text(&p.subject),
            opt_text(p.email.as_deref()),
            text(&p.name),
            text(&p.return_to),
            num(now),
            num(expires_at),
        ],
    )?;
    db.run(stmt).await.map(|_| ())
}

pub async fn pending_signup(db: &Db, id_hash: &str, now: i64) -> AppResult<Option<PendingSignup>> {
    let stmt = db.stmt(
        "SELECT issuer, subject, email, name, return_to FROM pending_signups WHERE id_hash = ?1 AND expires_at > ?2",
        &[text(id_hash), num(now)],
    )?;
    db.first(stmt).await
}

pub async fn drop_signup(db: &Db, id_hash: &str) -> AppResult<()> {
    db.run(db.stmt("DELETE FROM pending_signups WHERE id_hash = ?1", &[text(id_hash)])?).await.map(|_| ())
}

/// A key as its owner sees it in a list.
#[derive(Debug, Deserialize)]
pub struct KeyRow {
    pub key_hash: String,
    pub name: Option<String>,
    pub hint: Option<String>,
    pub created_at: i64,
}

/// The user's keys that still work, newest first.
pub async fn active_keys(db: &Db, user_id: &UserId) -> AppResult<Vec<KeyRow>> {
    let stmt = db.stmt(
        "SELECT key_hash, name, hint, created_at FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at DESC",
        &[text(user_id.as_str())],
    )?;
    db.all(stmt).await
}

/// Stores a new key for its owner unless they already hold `max_active`; true when stored.
pub async fn add_key(db: &Db, user_id: &UserId, key_hash: &str, name: &str, hint: &str, now: i64, max_active: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "INSERT INTO api_keys (key_hash, user_id, created_at, name, hint) SELECT ?1, ?2, ?3, ?4, ?5 \
         WHERE (SELECT COUNT(*) FROM api_keys WHERE user_id = ?2 AND revoked_at IS NULL) < ?6",
        &[text(key_hash), text(user_id.as_str()), num(now), text(name), text(hint), num(max_active)],
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// Revokes one of the user's working keys by its public id; true when it did.
pub async fn revoke_key(db: &Db, user_id: &UserId, public_id: &str, now: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "UPDATE api_keys SET revoked_at = ?3 WHERE user_id = ?1 AND substr(key_hash, 1, 16) = ?2 AND revoked_at IS NULL",
        &[text(user_id.as_str()), text(public_id), num(now)],
    )?;
    Ok(db.run(stmt).await? > 0)
}

/// The statements that forget expired sessions, sign-ins and waiting
/// sign-ups, and IP windows older than `keep_windows_ms`.
pub fn forget_expired(db: &Db, now: i64, keep_windows_ms: i64) -> AppResult<Vec<Stmt>> {
    Ok(vec![
        db.stmt("DELETE FROM sessions WHERE expires_at <= ?1", &[num(now)])?,
        db.stmt("DELETE FROM login_attempts WHERE expires_at <= ?1", &[num(now)])?,
        db.stmt("DELETE FROM pending_signups WHERE expires_at <= ?1", &[num(now)])?,
        db.stmt("DELETE FROM signup_windows WHERE window_start < ?1 - ?2", &[num(now), num(keep_windows_ms)])?,
    ])
}

//! Who is asking: a user by API key (`nbk_…`, stored as a hash) or by session
//! cookie (stored as a hash, same-origin rule for changes), or the operator by
//! the `ADMIN_TOKEN` secret.

use super::ctx::Ctx;
use super::request::Request;
use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::store::accounts;
use crate::adapters::store::users::{self, User};
use crate::domain::config::Config;
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::session::{
    clear_cookie, cross_origin_refusal, needs_refresh, read_cookie, set_cookie, token_hash, CookieKind, SESSION_TTL_MS,
};
use crate::domain::signature::{api_key_hash, ct_eq};
use serde_json::json;

fn bearer(req: &Request) -> Option<String> {
    let value = req.header("Authorization")?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    (!token.is_empty() && token.len() <= 256).then(|| token.to_string())
}

/// The value of one of our cookies on this request.
pub fn cookie(ctx: &Ctx, req: &Request, cfg: &Config, kind: CookieKind) -> Option<String> {
    let header = req.header("Cookie")?;
    read_cookie(&header, kind.name(ctx.secure_cookies(cfg))).map(str::to_string)
}

/// How a request authenticates a user (the stored hash of its key or session).
pub enum Credential {
    Key(String),
    Session(String),
}

/// The request's credential, or 401. An `Authorization` header wins over a
/// cookie. A cookie on a request that changes state must come from our own
/// origin (403 otherwise); API-key requests are not affected.
pub fn credential(ctx: &Ctx, req: &Request) -> AppResult<Credential> {
    if let Some(key) = bearer(req) {
        if !key.starts_with("nbk_") {
            return Err(AppError::unauthorized("That is not a valid API key."));
        }
        return Ok(Credential::Key(api_key_hash(&key)));
    }
    let cfg = ctx.config()?;
    if let Some(session) = cookie(ctx, req, &cfg, CookieKind::Session) {
        same_origin(ctx, req, &cfg)?;
        return Ok(Credential::Session(token_hash(&session)));
    }
    Err(AppError::unauthorized("Sign in, or send your API key as 'Authorization: Bearer nbk_…'."))
}

/// The same-origin rule for cookie-authenticated requests (see `domain::session`).
pub fn same_origin(ctx: &Ctx, req: &Request, cfg: &Config) -> AppResult<()> {
    let (origin, site) = (req.header("Origin"), req.header("Sec-Fetch-Site"));
    match cross_origin_refusal(req.method().as_ref(), origin.as_deref(), site.as_deref(), &ctx.own_origins(cfg)) {
        None => Ok(()),
        Some(why) => Err(AppError::new(ErrorCode::Forbidden, "Requests signed in by cookie must come from this site's own page.")
            .with_internal(format!("cross-origin cookie request: {why}"))
            .with_details(json!({ "reason": "cross_origin" }))),
    }
}

/// The user behind the request's key or session (401 when there is none).
/// A session used after `SESSION_REFRESH_SECONDS` gets its 30 days back (one
/// D1 write, and a fresh cookie); an ended one clears the cookie.
pub async fn user(ctx: &Ctx, req: &Request, db: &Db) -> AppResult<User> {
    let user = match credential(ctx, req)? {
        Credential::Key(hash) => users::by_key(db, &hash)
            .await?
            .ok_or_else(|| AppError::unauthorized("That API key is not valid (it may have been rotated)."))?,
        Credential::Session(hash) => session_user(ctx, req, db, &hash).await?,
    };
    ctx.log.set("user_id", user.id.as_str());
    Ok(user)
}

async fn session_user(ctx: &Ctx, req: &Request, db: &Db, hash: &str) -> AppResult<User> {
    let cfg = ctx.config()?;
    let secure = ctx.secure_cookies(&cfg);
    let now = now_ms();
    let Some((user, refreshed_at)) = accounts::session_user(db, hash, now).await? else {
        ctx.set_cookie(clear_cookie(CookieKind::Session, secure));
        return Err(AppError::unauthorized("Your session has ended. Please sign in again."));
    };
    if needs_refresh(refreshed_at, now, cfg.session_refresh_s * 1000) {
        accounts::slide_session(db, hash, now, now + SESSION_TTL_MS).await?;
        if let Some(id) = cookie(ctx, req, &cfg, CookieKind::Session) {
            ctx.set_cookie(set_cookie(CookieKind::Session, &id, secure));
        }
    }
    Ok(user)
}

/// Checks the operator token; a valid user key here is 403, anything else 401.
pub async fn admin(ctx: &Ctx, req: &Request, admin_token: &str) -> AppResult<()> {
    let token = bearer(req).ok_or_else(|| AppError::unauthorized("Send the operator token as 'Authorization: Bearer …'."))?;
    if ct_eq(token.as_bytes(), admin_token.as_bytes()) {
        ctx.log.set("user_id", "admin");
        return Ok(());
    }
    if token.starts_with("nbk_") && users::by_key(&ctx.db()?, &api_key_hash(&token)).await?.is_some() {
        return Err(AppError::new(ErrorCode::Forbidden, "User API keys cannot use the admin API."));
    }
    Err(AppError::unauthorized("That operator token is not valid."))
}

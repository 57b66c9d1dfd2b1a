//! Signing in with OpenID Connect: `GET /auth/login` (to the provider, with
//! state, nonce and PKCE bound to this browser by a pre-auth cookie),
//! `GET /auth/callback` (the code for an ID token, verified; an account for a
//! new person, with the starter credits; a session), `POST /auth/signup` (a
//! new person passes the human check when Turnstile is on), `POST /auth/logout`
//! and `GET /auth/status` (what the page needs to know).

use super::account::user_view;
use super::auth::{cookie, same_origin};
use super::ctx::{config_error, Ctx};
use super::extract::read_json;
use super::json_response;
use super::request::Request;
use super::response::Response;
use crate::adapters::cache::Cache;
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::d1::Db;
use crate::adapters::oidc::{OidcClient, ProviderError};
use crate::adapters::store::accounts::{self, AccountOutcome, LoginAttempt, LoginLimit, NewAccount, PendingSignup};
use crate::adapters::store::users;
use crate::adapters::turnstile;
use crate::domain::account::{display_name, ip_bucket_hash, window_start};
use crate::domain::config::{Config, ConfigProblem, OidcSettings};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::ids::UserId;
use crate::domain::jwt::Identity;
use crate::domain::oidc::{authorization_url, login_secrets, provider_error, provider_name, safe_return_path};
use crate::domain::session::{
    clear_cookie, new_session_id, set_cookie, token_hash, CookieKind, LOGIN_TTL_MS, SESSION_TTL_MS, SIGNUP_TTL_MS,
};
use crate::domain::signature::ct_eq;
use crate::domain::turnstile::{token_ok, Verdict};
use serde_json::{json, Value};

/// Sign-ins one address may start per minute: each stores a row for 10
/// minutes, so a flood is bounded before it reaches the provider.
const LOGINS_PER_IP_PER_MINUTE: i64 = 20;

/// Where a new person lands when the human check is still to be done.
const SIGNUP_PAGE: &str = "/?signup=verify";

fn oidc_settings(cfg: &Config) -> AppResult<&OidcSettings> {
    cfg.oidc.as_ref().ok_or_else(|| {
        config_error(&[ConfigProblem { name: "OIDC_CLIENT_ID".into(), problem: "not set: signing in with a provider is off".into() }])
    })
}

fn client<'a>(ctx: &'a Ctx, cfg: &'a Config, settings: &'a OidcSettings) -> OidcClient<'a> {
    OidcClient { settings, production: cfg.environment == "production", cache: Cache::from_env(&ctx.env, &ctx.log).ok(), log: &ctx.log }
}

/// `PUBLIC_BASE_URL` + `/auth/callback` (this request's origin when it is not set).
pub fn redirect_uri(ctx: &Ctx, cfg: &Config) -> String {
    format!("{}/auth/callback", ctx.public_origin(cfg))
}

fn redirect(location: &str) -> AppResult<Response> {
    Ok(Response::empty(302).with_header("Location", location))
}

fn client_ip(req: &Request) -> Option<String> {
    req.header("CF-Connecting-IP").map(|ip| ip.trim().to_string()).filter(|ip| !ip.is_empty() && ip.len() <= 64)
}

fn is_loopback(ip: &str) -> bool {
    ip.starts_with("127.") || ip == "::1"
}

/// `GET /auth/login[?return_to=/path]` → 302 to the provider.
pub async fn login(ctx: &Ctx, req: Request) -> AppResult<Response> {
    ctx.html_errors_unless_json(&req);
    let cfg = ctx.config()?;
    let settings = oidc_settings(&cfg)?;
    let db = ctx.db()?;
    let secrets = login_secrets(&random_bytes::<128>()?);
    let now = now_ms();
    let return_to = safe_return_path(ctx.query("return_to"));
    // Per address when the platform names it (always, behind Cloudflare); a
    // loopback address is local development (workerd names the local client).
    let bucket = client_ip(&req).filter(|ip| !is_loopback(ip)).map(|ip| ip_bucket_hash(&cfg.file_url_secret, &ip));
    let limit = bucket.as_deref().map(|bucket| LoginLimit { bucket, window_start: window_start(now, 60), max: LOGINS_PER_IP_PER_MINUTE });
    if !accounts::begin_login(&db, &secrets, &return_to, now, now + LOGIN_TTL_MS, limit.as_ref()).await? {
        ctx.log.warn(
            "auth.login_limited",
            "too many sign-ins started from one address",
            json!({ "limit_per_minute": LOGINS_PER_IP_PER_MINUTE }),
        );
        let retry = (60 - (now / 1000) % 60).max(1) as u32;
        return Err(
            AppError::new(ErrorCode::RateLimited, "Too many sign-ins started from this address; try again in a minute.").retry_after(retry)
        );
    }
    let discovery = client(ctx, &cfg, settings).discovery().await.map_err(ProviderError::into_app_error)?;
    ctx.set_cookie(set_cookie(CookieKind::Login, &secrets.login_id, ctx.secure_cookies(&cfg)));
    ctx.log.info("auth.login", "sent to the sign-in provider", json!({ "issuer": discovery.issuer }));
    redirect(&authorization_url(&discovery, &settings.client_id, &redirect_uri(ctx, &cfg), &secrets))
}

/// `GET /auth/callback?code=&state=`: on success a session cookie and 302 to
/// where the sign-in started; on any failure a 4xx page (or the JSON error
/// body), nobody signed in, nothing created, and an `auth.refused` line saying why.
pub async fn callback(ctx: &Ctx, req: Request) -> AppResult<Response> {
    ctx.html_errors_unless_json(&req);
    let outcome = sign_in(ctx, &req).await;
    if let Err(e) = &outcome {
        ctx.log.warn(
            "auth.refused",
            "sign-in refused",
            json!({ "error_code": e.code.as_str(), "cause": e.internal.clone().unwrap_or_else(|| e.message.clone()) }),
        );
    }
    outcome
}

async fn sign_in(ctx: &Ctx, req: &Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let settings = oidc_settings(&cfg)?;
    let db = ctx.db()?;
    // Whatever happens next, this sign-in is used up.
    ctx.set_cookie(clear_cookie(CookieKind::Login, ctx.secure_cookies(&cfg)));
    let attempt = take_attempt(ctx, req, &cfg, &db).await?;
    let code = provider_answer(ctx, &attempt)?;
    let client = client(ctx, &cfg, settings);
    let discovery = client.discovery().await.map_err(ProviderError::into_app_error)?;
    // RFC 9207: a provider that names itself in the answer must be ours (mix-up defence).
    if ctx.query("iss").is_some_and(|iss| iss != discovery.issuer) {
        return Err(AppError::invalid_request("This answer comes from another sign-in provider. Please start again.")
            .with_internal("iss parameter is not the configured issuer"));
    }
    let id_token = client
        .exchange_code(&discovery, &code, &attempt.code_verifier, &redirect_uri(ctx, &cfg))
        .await
        .map_err(ProviderError::into_app_error)?;
    let person = client.verify_id_token(&discovery, &id_token, &attempt.nonce, now_ms()).await.map_err(ProviderError::into_app_error)?;
    match accounts::identity_user(&db, &discovery.issuer, &person.subject).await? {
        Some(user_id) => open_session(ctx, &cfg, &db, &user_id, &attempt.return_to).await,
        None if cfg.turnstile.is_some() => hold_for_human_check(ctx, &cfg, &db, &discovery.issuer, &person, &attempt.return_to).await,
        None => {
            let pending = PendingSignup {
                issuer: discovery.issuer.clone(),
                subject: person.subject.clone(),
                email: person.email.clone(),
                name: display_name(&person),
                return_to: attempt.return_to.clone(),
            };
            let user = open_account(ctx, &cfg, &db, &pending, client_ip(req).as_deref()).await?;
            ctx.log.set("user_id", user.as_str());
            redirect(&attempt.return_to)
        }
    }
}

/// The sign-in this browser started, taken out of D1 (once).
async fn take_attempt(ctx: &Ctx, req: &Request, cfg: &Config, db: &Db) -> AppResult<LoginAttempt> {
    let expired =
        || AppError::invalid_request("This sign-in has expired, was already used, or was started in another browser. Please start again.");
    let login_id = cookie(ctx, req, cfg, CookieKind::Login).ok_or_else(|| expired().with_internal("no pre-auth cookie"))?;
    accounts::take_login(db, &token_hash(&login_id), now_ms())
        .await?
        .ok_or_else(|| expired().with_internal("sign-in unknown, used or expired"))
}

/// The provider's answer: its error, or a code whose `state` is this browser's.
fn provider_answer(ctx: &Ctx, attempt: &LoginAttempt) -> AppResult<String> {
    if let Some(error) = ctx.query("error") {
        return Err(AppError::unauthorized("The sign-in provider did not sign you in (you may have cancelled). Please start again.")
            .with_internal(format!("provider error: {}", provider_error(error))));
    }
    let state = ctx.query("state").unwrap_or("");
    if !ct_eq(state.as_bytes(), attempt.state.as_bytes()) {
        return Err(AppError::invalid_request(
            "This answer from the sign-in provider does not belong to this browser's sign-in. Please start again.",
        )
        .with_internal("state mismatch"));
    }
    match ctx.query("code") {
        Some(code) if !code.is_empty() && code.len() <= 2048 => Ok(code.to_string()),
        _ => Err(AppError::invalid_request("The sign-in provider's answer has no code. Please start again.").with_internal("no code")),
    }
}

/// A session for an existing account: the cookie, and 302 to `return_to`.
async fn open_session(ctx: &Ctx, cfg: &Config, db: &Db, user_id: &UserId, return_to: &str) -> AppResult<Response> {
    let session_id = new_session_id(&random_bytes::<32>()?);
    let now = now_ms();
    accounts::start_session(db, &token_hash(&session_id), user_id, now, now + SESSION_TTL_MS).await?;
    ctx.set_cookie(set_cookie(CookieKind::Session, &session_id, ctx.secure_cookies(cfg)));
    ctx.log.set("user_id", user_id.as_str());
    ctx.log.info("auth.session", "signed in", json!({ "new_account": false }));
    redirect(return_to)
}

/// Opens the account of a new person with the starter credits and its first
/// session (setting the cookie); the per-IP limit applies. Returns the user.
async fn open_account(ctx: &Ctx, cfg: &Config, db: &Db, p: &PendingSignup, ip: Option<&str>) -> AppResult<UserId> {
    let now = now_ms();
    let user_id = UserId::new(&random_bytes::<16>()?);
    let session_id = new_session_id(&random_bytes::<32>()?);
    let session_hash = token_hash(&session_id);
    let account = NewAccount {
        user_id: &user_id,
        name: &p.name,
        issuer: &p.issuer,
        subject: &p.subject,
        email: p.email.as_deref(),
        starter_credits: cfg.starter_credits,
        ip_hash: &ip_bucket_hash(&cfg.file_url_secret, ip.unwrap_or("unknown")),
        window_start: window_start(now, cfg.new_accounts_window_s),
        ip_limit: i64::from(cfg.new_accounts_per_ip),
        session_hash: &session_hash,
        session_expires_at: now + SESSION_TTL_MS,
        now,
    };
    let user_id = match accounts::create_account(db, &account).await? {
        AccountOutcome::Created => {
            ctx.log.set("user_id", user_id.as_str());
            ctx.log.info("auth.signup", "account opened with the starter credits", json!({ "credits": cfg.starter_credits }));
            user_id
        }
        AccountOutcome::Exists(existing) => {
            // Another callback for the same person won the race: sign in to that account.
            accounts::start_session(db, &session_hash, &existing, now, now + SESSION_TTL_MS).await?;
            ctx.log.set("user_id", existing.as_str());
            ctx.log.info("auth.session", "signed in", json!({ "new_account": false, "raced": true }));
            existing
        }
        AccountOutcome::IpLimited => {
            let window_ms = cfg.new_accounts_window_s * 1000;
            let retry_s = ((account.window_start + window_ms - now) / 1000).clamp(1, i64::from(u32::MAX)) as u32;
            return Err(AppError::new(
                ErrorCode::RateLimited,
                "Too many new accounts were opened from your network recently. Please try again later.",
            )
            .retry_after(retry_s)
            .with_internal("new-account limit for this IP")
            .with_details(json!({ "limit": "new_accounts_per_ip" })));
        }
    };
    ctx.set_cookie(set_cookie(CookieKind::Session, &session_id, ctx.secure_cookies(cfg)));
    Ok(user_id)
}

/// A new person with Turnstile on: kept (not yet an account) until the page
/// has them pass the human check and calls `POST /auth/signup`.
async fn hold_for_human_check(ctx: &Ctx, cfg: &Config, db: &Db, issuer: &str, person: &Identity, return_to: &str) -> AppResult<Response> {
    let pending_id = new_session_id(&random_bytes::<32>()?);
    let now = now_ms();
    let pending = PendingSignup {
        issuer: issuer.to_string(),
        subject: person.subject.clone(),
        email: person.email.clone(),
        name: display_name(person),
        return_to: return_to.to_string(),
    };
    accounts::hold_signup(db, &token_hash(&pending_id), &pending, now, now + SIGNUP_TTL_MS).await?;
    ctx.set_cookie(set_cookie(CookieKind::Signup, &pending_id, ctx.secure_cookies(cfg)));
    ctx.log.info("auth.signup_pending", "new person waits for the human check", json!({}));
    redirect(SIGNUP_PAGE)
}

/// `POST /auth/signup {"turnstile_token"}`: a new person who passed the human
/// check gets the account, the starter credits and a session.
pub async fn signup(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let db = ctx.db()?;
    let secure = ctx.secure_cookies(&cfg);
    let none_waiting = || AppError::unauthorized("No sign-up is waiting in this browser. Please sign in again.");
    let settings = cfg.turnstile.as_ref().ok_or_else(none_waiting)?;
    let pending_id = cookie(ctx, &req, &cfg, CookieKind::Signup).ok_or_else(none_waiting)?;
    same_origin(ctx, &req, &cfg)?;
    let pending_hash = token_hash(&pending_id);
    let pending = accounts::pending_signup(&db, &pending_hash, now_ms()).await?.ok_or_else(none_waiting)?;
    let body = read_json(&req, 8 * 1024).await?;
    let token = body
        .get("turnstile_token")
        .and_then(Value::as_str)
        .filter(|t| token_ok(t))
        .ok_or_else(|| AppError::validation("turnstile_token", "Send the human check's token as 'turnstile_token'."))?;
    let ip = client_ip(&req);
    match turnstile::verify(settings, token, ip.as_deref(), &ctx.log).await {
        Ok(Verdict::Passed) => {}
        Ok(Verdict::Failed(codes)) => {
            return Err(AppError::new(ErrorCode::Forbidden, "The human check did not pass. Please try again.")
                .with_internal(format!("turnstile: {}", codes.join(",")))
                .with_details(json!({ "reason": "turnstile_failed" })))
        }
        Err(why) => {
            return Err(AppError::new(ErrorCode::UpstreamUnavailable, "The human check cannot be confirmed right now. Please try again.")
                .with_internal(why))
        }
    }
    let user_id = open_account(ctx, &cfg, &db, &pending, ip.as_deref()).await?;
    accounts::drop_signup(&db, &pending_hash).await?;
    ctx.set_cookie(clear_cookie(CookieKind::Signup, secure));
    let user = users::by_id(&db, &user_id).await?.ok_or_else(|| AppError::internal("new user vanished"))?;
    json_response(200, &json!({ "user": user_view(&user), "return_to": pending.return_to }))
}

/// `POST /auth/logout`: ends this browser's session (same-origin only).
pub async fn logout(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let secure = ctx.secure_cookies(&cfg);
    let mut ended = false;
    if let Some(session) = cookie(ctx, &req, &cfg, CookieKind::Session) {
        same_origin(ctx, &req, &cfg)?;
        ended = accounts::end_session(&ctx.db()?, &token_hash(&session)).await?;
    }
    ctx.set_cookie(clear_cookie(CookieKind::Session, secure));
    ctx.log.info("auth.logout", "signed out", json!({ "session_ended": ended }));
    json_response(200, &json!({ "signed_out": true }))
}

/// `GET /auth/status`: public; whether this browser has a live session, how
/// to sign in, and a sign-up waiting for the human check.
pub async fn status(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let now = now_ms();
    let signed_in = match cookie(ctx, &req, &cfg, CookieKind::Session) {
        Some(session) => accounts::session_live(&ctx.db()?, &token_hash(&session), now).await?,
        None => false,
    };
    let signup = match (&cfg.turnstile, cookie(ctx, &req, &cfg, CookieKind::Signup)) {
        (Some(_), Some(id)) => {
            accounts::pending_signup(&ctx.db()?, &token_hash(&id), now).await?.map(|p| json!({ "name": p.name, "email": p.email }))
        }
        _ => None,
    };
    json_response(
        200,
        &json!({
            "signed_in": signed_in,
            "oidc": cfg.oidc.as_ref().map(|o| json!({ "provider": provider_name(&o.issuer), "login_url": "/auth/login" })),
            "turnstile_site_key": cfg.turnstile.as_ref().map(|t| t.site_key.clone()),
            "signup": signup,
        }),
    )
}

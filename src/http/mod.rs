//! The HTTP edge: routing, the request context, and the one place where an
//! [`AppError`] becomes a response.

mod account;
mod admin;
mod create;
mod extract;
pub mod files;
pub mod health;
mod page;
mod tasks;
mod webhook;

use crate::domain::config::Config;
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::signature::{api_key_hash, base32};
use crate::edge::db::Db;
use crate::edge::log::Log;
use crate::edge::store::{self, UserRow};
use crate::pipeline::{now_ms, Pipeline};
use serde_json::{json, Value};
use std::rc::Rc;
use worker::{Context, Env, Method, Request, Response};

pub use extract::{check_length, decode_cursor, encode_cursor, id_cursor, page_limit, paginate, parse_query, percent_decode, read_json, too_large};

/// Everything a handler needs about the current request.
pub struct Ctx {
    pub env: Env,
    pub worker: Rc<Context>,
    pub log: Log,
    pub request_id: String,
    /// `scheme://host[:port]` of this request.
    pub origin: String,
    pub query: Vec<(String, String)>,
    /// The configuration, read at most once per request.
    config: std::cell::OnceCell<Result<Rc<Config>, AppError>>,
}

impl Ctx {
    pub fn config(&self) -> AppResult<Rc<Config>> {
        self.config
            .get_or_init(|| crate::edge::read_config(&self.env).map(Rc::new).map_err(|problems| config_error(&problems)))
            .clone()
    }

    pub fn db(&self) -> AppResult<Db> {
        let d1 = self
            .env
            .d1("DB")
            .map_err(|_| AppError::new(ErrorCode::ConfigError, "This deployment has no D1 binding named DB.").with_details(json!({"settings": [{"name": "DB", "problem": "binding missing"}]})))?;
        Ok(Db::new(d1, self.log.clone()))
    }

    pub fn pipeline(&self) -> AppResult<Pipeline> {
        Ok(Pipeline { env: self.env.clone(), db: self.db()?, cfg: self.config()?, log: self.log.clone() })
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The public origin: `PUBLIC_BASE_URL` when set, else this request's origin.
    pub fn public_origin(&self, cfg: &Config) -> String {
        cfg.public_base_url.clone().unwrap_or_else(|| self.origin.clone())
    }

    /// Signs storage keys into `/files/` URLs on this request's origin, valid for
    /// the result lifetime: what task views show.
    pub fn result_url<'a>(&'a self, cfg: &'a Config) -> impl Fn(&str) -> String + 'a {
        move |key| files::signed_url(&self.origin, &cfg.file_url_secret, key, cfg.result_url_ttl_s, now_ms())
    }

    /// Runs work after the response is sent (slow result copying, resubmits).
    pub fn in_background<F: std::future::Future<Output = ()> + 'static>(&self, f: F) {
        self.worker.wait_until(f);
    }
}

/// `503 config_error` naming each missing or invalid setting (never its value).
pub fn config_error(problems: &[crate::domain::config::ConfigProblem]) -> AppError {
    let names: Vec<&str> = problems.iter().map(|p| p.name.as_str()).collect();
    AppError::new(ErrorCode::ConfigError, format!("This deployment is missing or has invalid settings: {}.", names.join(", ")))
        .with_details(json!({ "settings": problems }))
}

pub fn random_bytes<const N: usize>() -> AppResult<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| AppError::internal(format!("random: {e}")))?;
    Ok(buf)
}

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get("Authorization").ok().flatten()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    let token = token.trim();
    (!token.is_empty() && token.len() <= 256).then(|| token.to_string())
}

/// The hash of the request's user key, or 401. Admin tokens are not user keys.
pub fn user_key_hash(req: &Request) -> AppResult<String> {
    let key = bearer(req).ok_or_else(|| AppError::unauthorized("Send your API key as 'Authorization: Bearer nbk_…'."))?;
    if !key.starts_with("nbk_") {
        return Err(AppError::unauthorized("That is not a valid API key."));
    }
    Ok(api_key_hash(&key))
}

/// The user behind the request's key (401 when there is none).
pub async fn authenticate(ctx: &Ctx, req: &Request, db: &Db) -> AppResult<UserRow> {
    let hash = user_key_hash(req)?;
    let user = store::user_by_key(db, &hash).await?.ok_or_else(|| AppError::unauthorized("That API key is not valid (it may have been rotated)."))?;
    ctx.log.set("user_id", &user.id);
    Ok(user)
}

/// Checks the operator token; a valid user key here is 403, anything else 401.
pub async fn authenticate_admin(ctx: &Ctx, req: &Request, admin_token: &str) -> AppResult<()> {
    let token = bearer(req).ok_or_else(|| AppError::unauthorized("Send the operator token as 'Authorization: Bearer …'."))?;
    if crate::domain::signature::ct_eq(token.as_bytes(), admin_token.as_bytes()) {
        ctx.log.set("user_id", "admin");
        return Ok(());
    }
    if token.starts_with("nbk_") {
        let db = ctx.db()?;
        if store::user_by_key(&db, &api_key_hash(&token)).await?.is_some() {
            return Err(AppError::new(ErrorCode::Forbidden, "User API keys cannot use the admin API."));
        }
    }
    Err(AppError::unauthorized("That operator token is not valid."))
}

pub fn json_response(status: u16, body: &Value) -> AppResult<Response> {
    let resp = Response::from_json(body).map_err(|e| AppError::internal(format!("json response: {e}")))?;
    let _ = resp.headers().set("Content-Type", "application/json; charset=utf-8");
    Ok(resp.with_status(status))
}

fn request_id(req: &Request) -> String {
    req.headers()
        .get("cf-ray")
        .ok()
        .flatten()
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or_else(|| random_bytes::<10>().map(|b| base32(&b)).unwrap_or_else(|_| "unknown".into()))
}

/// Which handler a (method, path) goes to; `Err(allowed)` when the path exists
/// but not for this method.
enum Route {
    Page(&'static str),
    Health,
    Models,
    Create,
    ListTasks,
    GetTask(String),
    Me,
    Ledger,
    Webhook,
    File(String),
    Admin(admin::AdminRoute),
}

fn route(method: &Method, path: &str) -> Result<Route, Option<&'static str>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.clone();
    let only = |want: Method, allow: &'static str, r: Route| if m == want { Ok(r) } else { Err(Some(allow)) };
    match segs.as_slice() {
        [""] | ["index.html"] => only(Method::Get, "GET", Route::Page("index.html")),
        ["app.js"] => only(Method::Get, "GET", Route::Page("app.js")),
        ["app.css"] => only(Method::Get, "GET", Route::Page("app.css")),
        ["api", "health"] => only(Method::Get, "GET", Route::Health),
        ["api", "models"] => only(Method::Get, "GET", Route::Models),
        ["api", "create", "ai-image"] => only(Method::Post, "POST", Route::Create),
        ["api", "tasks"] => only(Method::Get, "GET", Route::ListTasks),
        ["api", "tasks", id] if !id.is_empty() => only(Method::Get, "GET", Route::GetTask(id.to_string())),
        ["api", "me"] => only(Method::Get, "GET", Route::Me),
        ["api", "me", "ledger"] => only(Method::Get, "GET", Route::Ledger),
        ["api", "webhooks", "kie-image"] | ["webhooks", "kie-image"] => only(Method::Post, "POST", Route::Webhook),
        ["files", rest @ ..] if !rest.is_empty() => {
            if m == Method::Get || m == Method::Head {
                Ok(Route::File(rest.join("/")))
            } else {
                Err(Some("GET, HEAD"))
            }
        }
        ["api", "admin", rest @ ..] => admin::route(&m, rest).map(Route::Admin),
        _ => Err(None),
    }
}

async fn dispatch(ctx: &Ctx, req: Request, r: Route) -> AppResult<Response> {
    match r {
        Route::Page(name) => page::serve(ctx, &req, name),
        Route::Health => health::health(ctx).await,
        Route::Models => account::models(ctx),
        Route::Create => create::create(ctx, req).await,
        Route::ListTasks => tasks::list(ctx, &req).await,
        Route::GetTask(id) => tasks::get(ctx, &req, &id).await,
        Route::Me => account::me(ctx, &req).await,
        Route::Ledger => account::ledger(ctx, &req).await,
        Route::Webhook => webhook::receive(ctx, req).await,
        Route::File(key) => files::serve(ctx, &req, &key).await,
        Route::Admin(a) => admin::dispatch(ctx, req, a).await,
    }
}

fn route_name(r: &Route) -> String {
    match r {
        Route::Page(_) => "page".into(),
        Route::Health => "health".into(),
        Route::Models => "models".into(),
        Route::Create => "create".into(),
        Route::ListTasks => "tasks.list".into(),
        Route::GetTask(_) => "tasks.get".into(),
        Route::Me => "me".into(),
        Route::Ledger => "me.ledger".into(),
        Route::Webhook => "webhook".into(),
        Route::File(_) => "files".into(),
        Route::Admin(a) => format!("admin.{}", a.name()),
    }
}

/// The one place where errors become responses.
fn error_response(ctx: &Ctx, err: &AppError) -> Response {
    let level_event = if err.status() >= 500 { "http.error" } else { "http.rejected" };
    let fields = json!({ "error_code": err.code.as_str(), "status": err.status(), "cause": err.internal, "reason": err.message });
    if err.status() >= 500 {
        ctx.log.error(level_event, "request failed", fields);
    } else {
        ctx.log.warn(level_event, "request refused", fields);
    }
    let body = err.body(&ctx.request_id);
    let mut resp = match Response::from_json(&body) {
        Ok(r) => r.with_status(err.status()),
        Err(_) => Response::empty().map(|r| r.with_status(err.status())).unwrap_or_else(|_| Response::builder().empty()),
    };
    let h = resp.headers_mut();
    let _ = h.set("Content-Type", "application/json; charset=utf-8");
    if let Some(s) = err.retry_after_s {
        let _ = h.set("Retry-After", &s.to_string());
    }
    if err.code == ErrorCode::MethodNotAllowed {
        if let Some(allow) = err.details.as_ref().and_then(|d| d.get("allow")).and_then(Value::as_str) {
            let _ = h.set("Allow", allow);
        }
    }
    resp
}

fn split_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (host, path_q) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path_q = path_q.split('#').next().unwrap_or("/");
    let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
    (format!("{scheme}://{host}"), path.to_string(), query.to_string())
}

pub async fn handle(req: Request, env: Env, worker_ctx: Context) -> Response {
    let started_ms = now_ms();
    let request_id = request_id(&req);
    let (origin, path, query) = split_url(&req.inner().url());
    let method = req.method();
    let ctx = Ctx {
        env,
        worker: Rc::new(worker_ctx),
        log: Log::new(&request_id, "unknown"),
        request_id: request_id.clone(),
        origin,
        query: parse_query(&query),
        config: std::cell::OnceCell::new(),
    };

    let result = match route(&method, &path) {
        Ok(r) => {
            ctx.log.set_route(&route_name(&r));
            dispatch(&ctx, req, r).await
        }
        Err(Some(allow)) => Err(AppError::new(ErrorCode::MethodNotAllowed, format!("Use {allow} here."))
            .with_details(json!({ "allow": allow }))),
        Err(None) => Err(AppError::new(ErrorCode::NotFound, "There is no such route.")),
    };
    let (mut resp, error_code) = match result {
        Ok(r) => (r, None),
        Err(e) => (error_response(&ctx, &e), Some(e.code.as_str())),
    };
    let status = resp.status_code();
    let h = resp.headers_mut();
    let _ = h.set("X-Request-Id", &request_id);
    let _ = h.set("X-Content-Type-Options", "nosniff");
    if !h.has("Cache-Control").unwrap_or(false) {
        let _ = h.set("Cache-Control", "no-store");
    }
    ctx.log.request(method.as_ref(), &path, status, now_ms() - started_ms, error_code);
    resp
}

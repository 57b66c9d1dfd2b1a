//! The HTTP edge: the request's context, routing, and the one place where an
//! [`AppError`] becomes a response. Handlers read top to bottom as named steps.

mod account;
mod admin;
mod auth;
mod billing;
mod client_errors;
mod create;
pub mod ctx;
mod extract;
mod files;
mod health;
mod keys;
mod models;
mod page;
mod request;
mod response;
mod routes;
mod signin;
mod stripe_webhook;
mod tasks;
mod webhook;

use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::log::Log;
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::ids::is_ray_id;
use crate::domain::signature::base32;
use ctx::Ctx;
use request::Request;
use response::Response;
use routes::Lookup;
use serde_json::{json, Value};
use worker::{web_sys, Context, Env};

/// A handler's JSON answer, already in the `Ok` its signature returns. Most
/// handlers end with it; writing `Ok(Response::json(..))` at each of them
/// instead made the wasm 6 KB larger (the `Ok` is built in every handler's
/// state machine rather than once here).
pub fn json_response(status: u16, body: &Value) -> AppResult<Response> {
    Ok(Response::json(status, body))
}

/// The request's id: Cloudflare's ray id when the header is a well-formed one
/// (16 hex digits, optionally `-` and a data-centre code); anything else a
/// client sent is ignored and we make our own.
fn request_id(req: &Request) -> String {
    req.cf_ray()
        .filter(|v| is_ray_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| random_bytes::<10>().map(|b| base32(&b)).unwrap_or_else(|_| "unknown".into()))
}

/// The one place where errors become responses (and `http.rejected` /
/// `http.error` log lines).
fn error_response(ctx: &Ctx, err: &AppError) -> Response {
    crate::adapters::metrics::note_error(err);
    let fields = json!({ "error_code": err.code.as_str(), "status": err.status(), "cause": err.internal, "reason": err.message });
    if err.status() >= 500 {
        ctx.log.error("http.error", "request failed", fields);
    } else {
        ctx.log.warn("http.rejected", "request refused", fields);
    }
    if ctx.wants_html_errors() {
        return page::error_page(err, &ctx.request_id);
    }
    let mut resp = Response::json(err.status(), &err.body(&ctx.request_id));
    if let Some(s) = err.retry_after_s {
        resp.set_header("Retry-After", s.to_string());
    }
    if err.code == ErrorCode::MethodNotAllowed {
        if let Some(allow) = err.details.as_ref().and_then(|d| d.get("allow")).and_then(Value::as_str) {
            resp.set_header("Allow", allow);
        }
    }
    resp
}

/// Answers one request. `None` only if the runtime refuses even a bare 500
/// (then the runtime fails the request itself).
pub async fn handle(raw: web_sys::Request, env: Env, worker_ctx: Context) -> Option<web_sys::Response> {
    let req = Request::new(raw);
    let started_ms = now_ms();
    let request_id = request_id(&req);
    let method = req.method();
    let mut ctx = Ctx::new(env, worker_ctx, Log::new(&request_id, "unknown"), request_id.clone(), req.url());

    let result = match routes::find(&method, &ctx.path) {
        Lookup::Route(route, params) => {
            ctx.log.set_route(route.name);
            ctx.set_params(params);
            (route.handler)(&ctx, req).await
        }
        Lookup::WrongMethod(allow) => {
            Err(AppError::new(ErrorCode::MethodNotAllowed, format!("Use {allow} here.")).with_details(json!({ "allow": allow })))
        }
        Lookup::Nothing => Err(AppError::new(ErrorCode::NotFound, "There is no such route.")),
    };
    let (mut resp, error_code) = match result {
        Ok(r) => (r, None),
        Err(e) => (error_response(&ctx, &e), Some(e.code.as_str())),
    };
    resp.set_header("X-Request-Id", request_id);
    resp.set_header("X-Content-Type-Options", "nosniff");
    for cookie in ctx.take_cookies() {
        resp.append_header("Set-Cookie", cookie);
    }
    if !resp.has_header("Cache-Control") {
        resp.set_header("Cache-Control", "no-store");
    }
    let status = resp.status();
    let web = resp.into_web().map_err(|cause| {
        ctx.log.error("http.error", "the runtime refused the response", json!({ "status": status, "cause": cause }));
    });
    ctx.log.request(method.as_ref(), &ctx.path, if web.is_ok() { status } else { 500 }, now_ms() - started_ms, error_code);
    ctx.flush_metrics();
    web.ok().or_else(|| Response::empty(500).into_web().ok())
}

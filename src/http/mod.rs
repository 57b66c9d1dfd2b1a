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
use routes::Lookup;
use serde_json::{json, Value};
use worker::{Context, Env, Response};

pub fn json_response(status: u16, body: &Value) -> AppResult<Response> {
    let resp = Response::from_json(body).map_err(|e| AppError::internal(format!("json response: {e}")))?;
    let _ = resp.headers().set("Content-Type", "application/json; charset=utf-8");
    Ok(resp.with_status(status))
}

/// The request's id: Cloudflare's ray id when the header is a well-formed one
/// (16 hex digits, optionally `-` and a data-centre code); anything else a
/// client sent is ignored and we make our own.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("cf-ray")
        .ok()
        .flatten()
        .filter(|v| is_ray_id(v))
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

pub async fn handle(raw: worker::web_sys::Request, env: Env, worker_ctx: Context) -> Response {
    let req = Request::new(raw);
    let started_ms = now_ms();
    let request_id = request_id(&req);
    let method = req.method();
    let mut ctx = Ctx::new(env, worker_ctx, Log::new(&request_id, "unknown"), request_id.clone(), &req.inner().url());

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
    let status = resp.status_code();
    let h = resp.headers_mut();
    let _ = h.set("X-Request-Id", &request_id);
    let _ = h.set("X-Content-Type-Options", "nosniff");
    for cookie in ctx.take_cookies() {
        let _ = h.append("Set-Cookie", &cookie);
    }
    if !h.has("Cache-Control").unwrap_or(false) {
        let _ = h.set("Cache-Control", "no-store");
    }
    ctx.log.request(method.as_ref(), &ctx.path, status, now_ms() - started_ms, error_code);
    ctx.flush_metrics();
    resp
}

//! The web page, embedded in the Worker at build time (see build.rs), and the
//! small HTML page sign-in errors are shown on.

use super::ctx::Ctx;
use super::request::Request;
use crate::domain::error::{AppError, AppResult};
use worker::Response;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https: http:; \
    connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
/// With Turnstile configured, the page may load its widget (a script and a frame from Cloudflare).
const CSP_TURNSTILE: &str = "default-src 'none'; script-src 'self' https://challenges.cloudflare.com; \
    frame-src https://challenges.cloudflare.com; style-src 'self'; img-src 'self' blob: data: https: http:; \
    connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
const CSP_ERROR: &str = "default-src 'none'; style-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /`, `/index.html`, `/app.js`, `/app.css`, `/errors.js`, `/billing.js`, `/billing.css`;
/// the operator dashboard `/admin`, `/admin.js`, `/admin.css` (the same CSP).
pub async fn serve(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let name = match ctx.path.trim_start_matches('/') {
        "" => "index.html",
        "admin" => "admin.html",
        other => other,
    };
    let (body, content_type, etag) =
        ASSETS.iter().find(|(n, _, _, _)| *n == name).map(|(_, b, t, e)| (*b, *t, *e)).ok_or_else(AppError::not_found)?;
    let not_modified = req.header("If-None-Match").is_some_and(|v| v == etag);
    let resp = if not_modified { Response::empty().map(|r| r.with_status(304)) } else { Response::from_bytes(body.to_vec()) }
        .map_err(|e| AppError::internal(e.to_string()))?;
    let turnstile = ctx.config().ok().is_some_and(|c| c.turnstile.is_some());
    let h = resp.headers();
    let _ = h.set("Content-Type", content_type);
    let _ = h.set("ETag", etag);
    let _ = h.set("Cache-Control", "public, max-age=0, must-revalidate");
    let _ = h.set("Content-Security-Policy", if turnstile { CSP_TURNSTILE } else { CSP });
    let _ = h.set("Referrer-Policy", "no-referrer");
    Ok(resp)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An error as a page for a person whose browser was sent here (sign-in):
/// what went wrong, the request id, and the way back. Same status as the JSON.
pub fn error_page(err: &AppError, request_id: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Sign-in problem</title><link rel=\"stylesheet\" href=\"/app.css\"></head><body><main>\
         <section class=\"card signin\" data-testid=\"auth-error\" data-code=\"{code}\"><h2>Signing in did not work</h2><p>{message}</p>\
         <p class=\"hint\">Request id: <code>{rid}</code></p><p><a class=\"btn primary\" href=\"/\">Back to the page</a></p>\
         </section></main></body></html>",
        code = err.code.as_str(),
        message = escape(&err.message),
        rid = escape(request_id),
    );
    let resp = Response::from_html(body).map(|r| r.with_status(err.status())).unwrap_or_else(|_| Response::builder().empty());
    let h = resp.headers();
    let _ = h.set("Content-Type", "text/html; charset=utf-8");
    let _ = h.set("Content-Security-Policy", CSP_ERROR);
    let _ = h.set("Referrer-Policy", "no-referrer");
    if let Some(s) = err.retry_after_s {
        let _ = h.set("Retry-After", &s.to_string());
    }
    resp
}

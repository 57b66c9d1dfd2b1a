//! The web page, embedded in the Worker at build time (see build.rs), and the
//! small HTML page sign-in errors are shown on.

use super::ctx::Ctx;
use super::request::Request;
use super::response::{Body, Response};
use crate::domain::error::{AppError, AppResult};

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
    let resp = if not_modified { Response::empty(304) } else { Response::new(200, Body::Static(body)) };
    let turnstile = ctx.config().ok().is_some_and(|c| c.turnstile.is_some());
    Ok(resp
        .with_header("Content-Type", content_type)
        .with_header("ETag", etag)
        .with_header("Cache-Control", "public, max-age=0, must-revalidate")
        .with_header("Content-Security-Policy", if turnstile { CSP_TURNSTILE } else { CSP })
        .with_header("Referrer-Policy", "no-referrer"))
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
    let mut resp = Response::new(err.status(), Body::Text(body))
        .with_header("Content-Type", "text/html; charset=utf-8")
        .with_header("Content-Security-Policy", CSP_ERROR)
        .with_header("Referrer-Policy", "no-referrer");
    if let Some(s) = err.retry_after_s {
        resp.set_header("Retry-After", s.to_string());
    }
    resp
}

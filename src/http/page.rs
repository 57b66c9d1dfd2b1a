//! The web page, embedded in the Worker at build time (see build.rs).

use super::ctx::Ctx;
use crate::domain::error::{AppError, AppResult};
use worker::{Request, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https: http:; \
    connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /`, `/index.html`, `/app.js`, `/app.css`, `/errors.js`; the operator
/// dashboard `/admin`, `/admin.js`, `/admin.css` (the same CSP).
pub async fn serve(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let name = match ctx.path.trim_start_matches('/') {
        "" => "index.html",
        "admin" => "admin.html",
        other => other,
    };
    let (body, content_type, etag) =
        ASSETS.iter().find(|(n, _, _, _)| *n == name).map(|(_, b, t, e)| (*b, *t, *e)).ok_or_else(AppError::not_found)?;
    let not_modified = req.headers().get("If-None-Match").ok().flatten().is_some_and(|v| v == etag);
    let resp = if not_modified { Response::empty().map(|r| r.with_status(304)) } else { Response::from_bytes(body.to_vec()) }
        .map_err(|e| AppError::internal(e.to_string()))?;
    let h = resp.headers();
    let _ = h.set("Content-Type", content_type);
    let _ = h.set("ETag", etag);
    let _ = h.set("Cache-Control", "public, max-age=0, must-revalidate");
    let _ = h.set("Content-Security-Policy", CSP);
    let _ = h.set("Referrer-Policy", "no-referrer");
    Ok(resp)
}

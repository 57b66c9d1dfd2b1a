//! `POST /api/client-errors`: browsers report their uncaught errors and
//! failed API calls. Public, small (4 KB, larger is 413), rate-limited per
//! client (by a hash of its address, in D1), never echoed back (204): the
//! report becomes one `client.error` log line next to the server's own, with
//! URLs cut to their path and key-like strings redacted.

use super::ctx::Ctx;
use super::extract::read_json;
use super::request::Request;
use super::response::Response;
use crate::adapters::clock::now_ms;
use crate::adapters::metrics;
use crate::adapters::store::monitoring;
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::monitor::alerts::event;
use crate::domain::monitor::client_error::{parse, scrub};
use crate::domain::signature::sha256_hex;
use serde_json::json;

pub const MAX_REPORT_BYTES: u64 = 4 * 1024;
/// Reports per client per minute.
pub const REPORTS_PER_MINUTE: i64 = 20;

/// Who reports, without keeping the address: a salted hash, cut short.
fn client_key(req: &Request) -> String {
    let address = req.header("CF-Connecting-IP").unwrap_or_else(|| "local".into());
    let hash = sha256_hex(format!("client-errors:{address}").as_bytes());
    format!("ce:{}", hash.get(..16).unwrap_or(&hash))
}

pub async fn report(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let db = ctx.db()?;
    let body = read_json(&req, MAX_REPORT_BYTES).await?;
    let now = now_ms();
    let count = monitoring::hit_client_window(&db, &client_key(&req), now / 60_000 * 60_000).await?;
    if count > REPORTS_PER_MINUTE {
        let retry = (60 - (now / 1000) % 60).max(1) as u32;
        return Err(
            AppError::new(ErrorCode::RateLimited, "Too many error reports from this client; try again in a minute.").retry_after(retry)
        );
    }
    let report = parse(&body)?;
    let user_agent = req.header("User-Agent").map(|ua| scrub(&ua, 160));
    metrics::event(event::CLIENT_ERROR);
    ctx.log.warn(
        "client.error",
        "a browser reported an error",
        json!({ "client_message": report.message, "page": report.url, "client_stack": report.stack,
                "client_request_id": report.request_id, "user_agent": user_agent }),
    );
    Ok(Response::empty(204))
}

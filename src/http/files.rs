//! `GET|HEAD /files/<key>`: R2 objects behind an expiring HMAC signature.
//! Inputs are signed for Kie to fetch, results for the user's history.

use super::ctx::Ctx;
use super::request::Request;
use super::response::{Body, Response};
use crate::adapters::clock::now_ms;
use crate::adapters::files::Files;
use crate::domain::error::{AppError, AppResult};
use crate::domain::query::percent_decode;
use crate::domain::signature::verify_file_signature;
use serde_json::json;
use worker::Method;

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` against the object size.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n.min(size)), size - 1)
        }
        (s, "") => (s.parse().ok()?, size - 1),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

pub async fn serve(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let key = percent_decode(ctx.param("key"));
    if !Files::is_valid_key(&key) {
        return Err(AppError::not_found());
    }
    if let Err(why) = verify_file_signature(&cfg.file_url_secret, &key, ctx.query("exp"), ctx.query("sig"), now_ms() / 1000) {
        ctx.log.warn("files.denied", "file request without a valid signature", json!({ "reason": format!("{why:?}") }));
        return Err(AppError::not_found());
    }
    let files = ctx.files()?;
    let info = files.head(&key).await?.ok_or_else(AppError::not_found)?;
    let range = req.header("Range").and_then(|h| parse_range(&h, info.size));
    let (status, body, length) = if req.method() == Method::Head {
        (200, Body::Empty, info.size)
    } else {
        let body = Body::Stream(files.body(&key, range).await?.ok_or_else(AppError::not_found)?);
        match range {
            Some((start, end)) => (206, body, end - start + 1),
            None => (200, body, info.size),
        }
    };
    let mut resp = Response::new(status, body)
        .with_header("Content-Type", info.content_type)
        .with_header("Cache-Control", "private, max-age=86400, immutable")
        .with_header("Accept-Ranges", "bytes")
        .with_header("Content-Length", length.to_string())
        .with_header("ETag", info.etag);
    if let Some((start, end)) = range {
        resp.set_header("Content-Range", format!("bytes {start}-{end}/{}", info.size));
    }
    Ok(resp)
}

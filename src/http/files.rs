//! `/files/<key>`: R2 objects behind an expiring HMAC signature. Inputs are
//! signed for Kie to fetch, results for the user's history.

use super::{random_bytes, Ctx};
use crate::domain::error::{AppError, AppResult};
use crate::domain::image::ImageKind;
use crate::domain::signature::{base32, file_signature, verify_file_signature};
use crate::pipeline::{now_ms, FILES_BUCKET};
use serde_json::json;
use worker::{Env, HttpMetadata, Method, Range, Request, Response, ResponseBody};

/// A URL for `key`, valid until a whole day past `now + ttl` (stable within a day,
/// so browsers can cache it).
pub fn signed_url(origin: &str, secret: &str, key: &str, ttl_s: i64, now_ms: i64) -> String {
    let exp = ((now_ms / 1000 + ttl_s) / 86_400 + 1) * 86_400;
    format!("{origin}/files/{key}?exp={exp}&sig={}", file_signature(secret, key, exp))
}

/// Stores an input image under an unguessable key; returns the key.
pub async fn store_input(env: &Env, bytes: &[u8], kind: ImageKind) -> AppResult<String> {
    let bucket = env.bucket(FILES_BUCKET).map_err(|e| AppError::internal(format!("r2 binding: {e}")))?;
    let key = format!("in/{}.{}", base32(&random_bytes::<20>()?), kind.extension());
    bucket
        .put(&key, bytes.to_vec())
        .http_metadata(HttpMetadata { content_type: Some(kind.content_type().into()), ..Default::default() })
        .execute()
        .await
        .map_err(|e| AppError::internal(format!("r2 put: {e}")))?;
    Ok(key)
}

fn valid_key(key: &str) -> bool {
    (key.starts_with("in/") || key.starts_with("out/"))
        && key.len() <= 200
        && !key.contains("..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

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

pub async fn serve(ctx: &Ctx, req: &Request, key: &str) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let key = super::percent_decode(key);
    if !valid_key(&key) {
        return Err(AppError::not_found());
    }
    if let Err(why) = verify_file_signature(&cfg.file_url_secret, &key, ctx.query("exp"), ctx.query("sig"), now_ms() / 1000) {
        ctx.log.warn("files.denied", "file request without a valid signature", json!({ "reason": format!("{why:?}") }));
        return Err(AppError::not_found());
    }
    let bucket = ctx.env.bucket(FILES_BUCKET).map_err(|e| AppError::internal(format!("r2 binding: {e}")))?;
    let head = bucket.head(&key).await.map_err(|e| AppError::internal(format!("r2 head: {e}")))?.ok_or_else(AppError::not_found)?;
    let size = head.size();
    let content_type = head.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into());
    let range = req.headers().get("Range").ok().flatten().and_then(|h| parse_range(&h, size));

    let (status, body, length) = if req.method() == Method::Head {
        (200, None, size)
    } else {
        let get = bucket.get(&key);
        let get = match range {
            Some((start, end)) => get.range(Range::OffsetWithLength { offset: start, length: end - start + 1 }),
            None => get,
        };
        let object = get.execute().await.map_err(|e| AppError::internal(format!("r2 get: {e}")))?.ok_or_else(AppError::not_found)?;
        let body = object.body().ok_or_else(|| AppError::internal("r2 object without body"))?;
        let stream = body.stream().map_err(|e| AppError::internal(format!("r2 stream: {e}")))?;
        let length = range.map(|(s, e)| e - s + 1).unwrap_or(size);
        (if range.is_some() { 206 } else { 200 }, Some(stream), length)
    };
    let resp = match body {
        Some(stream) => Response::from_stream(stream).map_err(|e| AppError::internal(e.to_string()))?,
        None => Response::from_body(ResponseBody::Empty).map_err(|e| AppError::internal(e.to_string()))?,
    };
    let resp = resp.with_status(status);
    let h = resp.headers();
    let _ = h.set("Content-Type", &content_type);
    let _ = h.set("X-Content-Type-Options", "nosniff");
    let _ = h.set("Cache-Control", "private, max-age=86400, immutable");
    let _ = h.set("Accept-Ranges", "bytes");
    let _ = h.set("Content-Length", &length.to_string());
    let _ = h.set("ETag", &head.http_etag());
    if let Some((start, end)) = range {
        let _ = h.set("Content-Range", &format!("bytes {start}-{end}/{size}"));
    }
    Ok(resp)
}

//! Taking requests apart: bodies under a cap that holds as the bytes arrive
//! (JSON, multipart), query strings, pagination limits and cursors. Every
//! failure is an [`AppError`] with the api.md code.

use super::ctx::Ctx;
use super::request::Request;
pub use crate::adapters::streams::too_large;
use crate::adapters::streams::{body_error, read_request_body, settle, Counted};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use serde_json::Value;
use wasm_bindgen::JsCast;
use worker::js_sys::Uint8Array;
use worker::web_sys::{FormData, Response as WebResponse, ResponseInit};

/// Reads a whole body, refusing it (413) when its declared length is over
/// `max_bytes` and, with or without a declared length, the moment more than
/// `max_bytes` have arrived.
pub async fn read_body(req: &Request, max_bytes: u64) -> AppResult<Vec<u8>> {
    match check_length(req, max_bytes)? {
        // The runtime holds a body to its declared length: read it in one call.
        Some(_) => {
            let buffer = settle(req.inner().array_buffer().map_err(|e| AppError::internal(format!("body: {e:?}")))?, None)
                .await
                .map_err(body_error)?;
            Ok(Uint8Array::new(&buffer).to_vec())
        }
        // No length declared: count the bytes as they arrive.
        None => read_request_body(req.inner().body(), max_bytes).await,
    }
}

/// Reads a JSON object body under the same cap.
pub async fn read_json(req: &Request, max_bytes: u64) -> AppResult<Value> {
    let ct = req.header("Content-Type").unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(AppError::new(ErrorCode::UnsupportedMediaType, "Send the body as application/json."));
    }
    let bytes = read_body(req, max_bytes).await?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| AppError::new(ErrorCode::InvalidJson, format!("The body is not valid JSON: {e}.")))?;
    if !value.is_object() {
        return Err(AppError::new(ErrorCode::InvalidRequest, "The body must be a JSON object."));
    }
    Ok(value)
}

/// Parses a multipart body on the JavaScript side (its files never enter
/// wasm), counting its bytes as they arrive: past `max_bytes` the parse is
/// aborted and the answer is 413, whether or not a length was declared.
pub async fn read_form(req: &Request, max_bytes: u64) -> AppResult<FormData> {
    check_length(req, max_bytes)?;
    let unreadable = |why: String| AppError::invalid_request("The multipart body could not be read.").with_internal(why);
    let body = req.inner().body().ok_or_else(|| unreadable("no body".into()))?;
    let counted = Counted::new(&body, max_bytes)?;
    let init = ResponseInit::new();
    init.set_headers(&req.inner().headers());
    let parsed = WebResponse::new_with_opt_readable_stream_and_init(Some(&counted.readable), &init)
        .and_then(|r| r.form_data())
        .map_err(|e| AppError::internal(format!("form: {e:?}")))?;
    let form = settle(parsed, None).await;
    counted.finished().await.map_err(body_error)?;
    form.map(|f| f.unchecked_into()).map_err(|e| unreadable(e.to_string()))
}

/// Refuses a body whose declared length is over the limit, before reading it.
pub fn check_length(req: &Request, max_bytes: u64) -> AppResult<Option<u64>> {
    let declared = req.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max_bytes => Err(too_large(max_bytes)),
        other => Ok(other),
    }
}

/// Pagination limit: 1..=100, default 20.
pub fn page_limit(ctx: &Ctx) -> AppResult<u32> {
    match ctx.query("limit") {
        None => Ok(20),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(AppError::validation("limit", "limit must be a whole number from 1 to 100.")),
        },
    }
}

/// Cursor for (created_at, id) keyset pagination, opaque to clients.
pub fn encode_cursor(ts: i64, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ts}|{id}"))
}

pub fn decode_cursor(ctx: &Ctx) -> AppResult<Option<(i64, String)>> {
    use base64::Engine;
    let Some(raw) = ctx.query("cursor").filter(|c| !c.is_empty()) else { return Ok(None) };
    let bad = || AppError::validation("cursor", "The cursor is not one this API gave out.");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (ts, id) = text.split_once('|').ok_or_else(bad)?;
    Ok(Some((ts.parse().map_err(|_| bad())?, id.to_string())))
}

/// The `cursor` of pages keyed by a row id (ledger, audit).
pub fn id_cursor(ctx: &Ctx) -> AppResult<Option<i64>> {
    match ctx.query("cursor").filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => c.parse().map(Some).map_err(|_| AppError::validation("cursor", "The cursor is not one this API gave out.")),
    }
}

/// Splits `limit + 1` rows into one page and the cursor of the next page, if any.
pub fn paginate<T>(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor_of) } else { None };
    (rows, next)
}

//! R2, where inputs (`in/`) and results (`out/`) live. Every R2 call of the
//! service goes through here.

use super::clock::random_bytes;
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::TaskId;
use crate::domain::image::ImageKind;
use crate::domain::signature::base32;
use worker::{Bucket, Env, HttpMetadata, Range, ResponseBody};

pub const BINDING: &str = "FILES";

fn r2_error(what: &str, e: worker::Error) -> AppError {
    AppError::internal(format!("r2 {what}: {e}"))
}

/// What we know of a stored object without reading it.
pub struct FileInfo {
    pub size: u64,
    pub content_type: String,
    pub etag: String,
}

pub struct Files(Bucket);

impl Files {
    pub fn from_env(env: &Env) -> AppResult<Files> {
        env.bucket(BINDING).map(Files).map_err(|e| r2_error("binding", e))
    }

    /// The key of a new input: unguessable, with the extension of its kind.
    pub fn new_input_key(kind: ImageKind) -> AppResult<String> {
        Ok(format!("in/{}.{}", base32(&random_bytes::<20>()?), kind.extension()))
    }

    /// The key of a task's `index`-th result.
    pub fn result_key(task: &TaskId, index: usize, kind: ImageKind) -> String {
        format!("out/{task}/{index}.{}", kind.extension())
    }

    /// Whether `key` is one of ours (and safe to look up).
    pub fn is_valid_key(key: &str) -> bool {
        (key.starts_with("in/") || key.starts_with("out/"))
            && key.len() <= 200
            && !key.contains("..")
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> AppResult<()> {
        self.0
            .put(key, bytes)
            .http_metadata(HttpMetadata { content_type: Some(content_type.into()), ..Default::default() })
            .execute()
            .await
            .map(|_| ())
            .map_err(|e| r2_error("put", e))
    }

    pub async fn head(&self, key: &str) -> AppResult<Option<FileInfo>> {
        let head = self.0.head(key).await.map_err(|e| r2_error("head", e))?;
        Ok(head.map(|o| FileInfo {
            size: o.size(),
            content_type: o.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into()),
            etag: o.http_etag(),
        }))
    }

    /// The object's bytes (or `range` of them, inclusive) as a stream that
    /// stays on the JavaScript side: served bytes never enter wasm memory.
    pub async fn body(&self, key: &str, range: Option<(u64, u64)>) -> AppResult<Option<ResponseBody>> {
        let get = self.0.get(key);
        let get = match range {
            Some((start, end)) => get.range(Range::OffsetWithLength { offset: start, length: end - start + 1 }),
            None => get,
        };
        let Some(object) = get.execute().await.map_err(|e| r2_error("get", e))? else { return Ok(None) };
        let body = object.body().ok_or_else(|| AppError::internal("r2 object without a body"))?;
        body.response_body().map(Some).map_err(|e| r2_error("body", e))
    }

    pub async fn delete(&self, key: &str) -> AppResult<()> {
        self.0.delete(key).await.map_err(|e| r2_error("delete", e))
    }
}

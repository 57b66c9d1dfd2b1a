//! R2, where inputs (`in/`) and results (`out/`) live. Every R2 call of the
//! service goes through here, counted against the invocation's subrequest
//! budget and its six connections. Stored and served bytes stay on the
//! JavaScript side: uploads go from the parsed form to R2, results stream
//! from Kie's URL to R2, downloads from R2 to the client. Only an image's
//! first bytes enter wasm, to prove it is one.

use super::clock::now_ms;
use super::clock::random_bytes;
use super::js_message;
use super::log::Log;
use super::streams::{settle, write, Chunks, Counted, StreamError};
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::TaskId;
use crate::domain::image::{ImageInfo, ImageKind, ImageProbe, InvalidImage, Probe, PROBE_LIMIT};
use crate::domain::signature::base32;
use futures_util::future::{select, Either};
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{Array, Object, Reflect, Uint8Array};
use worker::web_sys::{Blob, ReadableStream};
use worker::worker_sys::types::{FixedLengthStream, R2Bucket};
use worker::{Delay, Env};

pub const BINDING: &str = "FILES";

fn r2_error(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("r2 {what}: {e}"))
}

fn get(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// What we know of a stored object without reading it.
pub struct FileInfo {
    pub size: u64,
    pub content_type: String,
    pub etag: String,
}

/// An image stored after its header proved it one.
pub struct StoredImage {
    pub key: String,
    pub info: ImageInfo,
    pub bytes: u64,
}

/// Why an image stream was not stored.
pub enum PutImageError {
    /// The bytes are not a PNG, JPEG or WebP image.
    NotImage(InvalidImage),
    /// The stream broke or passed its cap.
    Stream(StreamError),
    /// R2 refused the write.
    Storage(AppError),
}

pub struct Files {
    bucket: R2Bucket,
    log: Log,
}

impl Files {
    pub fn from_env(env: &Env, log: &Log) -> AppResult<Files> {
        let binding = Reflect::get(env, &JsValue::from_str(BINDING)).map_err(|_| r2_error("binding", "unreadable"))?;
        if binding.is_undefined() || binding.is_null() {
            return Err(r2_error("binding", format!("no binding named {BINDING}")));
        }
        Ok(Files { bucket: binding.unchecked_into(), log: log.clone() })
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

    /// One R2 call: a subrequest and, while it runs, a connection.
    async fn call(&self, what: &str, promise: Result<worker::js_sys::Promise, JsValue>) -> AppResult<JsValue> {
        self.log.spend_subrequest(what)?;
        let _connection = self.log.connection().await;
        let promise = promise.map_err(|e| r2_error(what, js_message(&e)))?;
        settle(promise, None).await.map_err(|e| r2_error(what, e))
    }

    fn put_options(content_type: &str) -> JsValue {
        let meta = Object::new();
        let _ = Reflect::set(&meta, &JsValue::from_str("contentType"), &JsValue::from_str(content_type));
        let options = Object::new();
        let _ = Reflect::set(&options, &JsValue::from_str("httpMetadata"), &meta);
        options.into()
    }

    /// Stores bytes, a Blob/File or a stream of known length, as they are.
    pub async fn put(&self, key: &str, value: &JsValue, content_type: &str) -> AppResult<()> {
        self.call("put", self.bucket.put(key.to_string(), value.clone(), Self::put_options(content_type))).await.map(|_| ())
    }

    pub async fn put_bytes(&self, key: &str, bytes: &[u8], content_type: &str) -> AppResult<()> {
        self.put(key, &Uint8Array::from(bytes).into(), content_type).await
    }

    pub async fn put_blob(&self, key: &str, blob: &Blob, content_type: &str) -> AppResult<()> {
        self.put(key, blob.as_ref(), content_type).await
    }

    /// Streams an image into R2 under `key_for(kind)`, once its first bytes
    /// prove it a PNG, JPEG or WebP with sane dimensions. The bytes are piped
    /// by the runtime through a counter that stops them past `cap`; with a
    /// `length` (from `Content-Length`) they flow straight into R2, without one
    /// they are gathered on the JavaScript side first. Reading ends by
    /// `deadline` (Unix ms) however slowly the bytes come.
    pub async fn put_image_stream(
        &self,
        body: &ReadableStream,
        length: Option<u64>,
        cap: u64,
        deadline: i64,
        key_for: impl Fn(ImageKind) -> String,
    ) -> Result<StoredImage, PutImageError> {
        let storage = |what: &str, e: JsValue| PutImageError::Storage(r2_error(what, js_message(&e)));
        let counted = Counted::new(body, cap).map_err(PutImageError::Storage)?;
        let mut chunks = Chunks::new(&counted.readable, u64::MAX, None).until(Some(deadline));
        let (info, head) = probe_head(&mut chunks).await?;
        let key = key_for(info.kind);
        let options = Self::put_options(info.kind.content_type());
        let rest = async {
            match length {
                Some(len) => {
                    let fixed = FixedLengthStream::new(u32::try_from(len).unwrap_or(u32::MAX)).map_err(|e| storage("stream", e))?;
                    let writer = fixed.writable().get_writer().map_err(|e| storage("stream", e))?;
                    let stored = self.call("put", self.bucket.put(key.clone(), fixed.readable().into(), options));
                    let piped = async {
                        for chunk in &head {
                            write(&writer, chunk).await?;
                        }
                        writer.release_lock();
                        chunks.release();
                        settle(counted.readable.pipe_to(&fixed.writable()), None).await.map(|_| ())
                    };
                    let (stored, piped) = futures_util::future::join(stored, piped).await;
                    counted.finished().await.map_err(PutImageError::Stream)?;
                    piped.map_err(PutImageError::Stream)?;
                    stored.map_err(PutImageError::Storage)?;
                    Ok(len)
                }
                None => {
                    // No length for R2: gather the rest on the JavaScript side first.
                    let parts = Array::new();
                    for chunk in &head {
                        parts.push(chunk);
                    }
                    loop {
                        match chunks.next().await {
                            Ok(Some(chunk)) => {
                                parts.push(&chunk);
                            }
                            Ok(None) => break,
                            // The counter errored the stream: say why.
                            Err(e) => return Err(PutImageError::Stream(counted.finished().await.err().unwrap_or(e))),
                        }
                    }
                    let blob = Blob::new_with_u8_array_sequence(&parts).map_err(|e| storage("blob", e))?;
                    self.put(&key, blob.as_ref(), info.kind.content_type()).await.map_err(PutImageError::Storage)?;
                    Ok(blob.size() as u64)
                }
            }
        };
        let left = (deadline - now_ms()).max(1) as u64;
        let copied = match select(Box::pin(rest), Delay::from(Duration::from_millis(left))).await {
            Either::Left((bytes, _)) => bytes,
            Either::Right(_) => Err(PutImageError::Stream(StreamError::Stalled)),
        };
        Ok(StoredImage { key, info, bytes: copied? })
    }

    pub async fn head(&self, key: &str) -> AppResult<Option<FileInfo>> {
        let object = self.call("head", self.bucket.head(key.to_string())).await?;
        if object.is_null() || object.is_undefined() {
            return Ok(None);
        }
        let content_type = get(&get(&object, "httpMetadata"), "contentType").as_string();
        Ok(Some(FileInfo {
            size: get(&object, "size").as_f64().unwrap_or(0.0) as u64,
            content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            etag: get(&object, "httpEtag").as_string().unwrap_or_default(),
        }))
    }

    /// The object's bytes (or `range` of them, inclusive) as a stream that
    /// stays on the JavaScript side.
    pub async fn body(&self, key: &str, range: Option<(u64, u64)>) -> AppResult<Option<ReadableStream>> {
        let options = Object::new();
        if let Some((start, end)) = range {
            let r = Object::new();
            let _ = Reflect::set(&r, &JsValue::from_str("offset"), &JsValue::from_f64(start as f64));
            let _ = Reflect::set(&r, &JsValue::from_str("length"), &JsValue::from_f64((end - start + 1) as f64));
            let _ = Reflect::set(&options, &JsValue::from_str("range"), &r);
        }
        let object = self.call("get", self.bucket.get(key.to_string(), options.into())).await?;
        if object.is_null() || object.is_undefined() {
            return Ok(None);
        }
        Ok(get(&object, "body").dyn_into::<ReadableStream>().ok())
    }

    pub async fn delete(&self, key: &str) -> AppResult<()> {
        self.call("delete", self.bucket.delete(key.to_string())).await.map(|_| ())
    }
}

/// Reads chunks until the image header is proven (or disproven). Only these
/// first bytes are copied into wasm; the chunks themselves are kept to be
/// written out first.
async fn probe_head(chunks: &mut Chunks) -> Result<(ImageInfo, Vec<Uint8Array>), PutImageError> {
    let mut probe = ImageProbe::new();
    let mut head = Vec::new();
    let mut probed: u32 = 0;
    loop {
        let verdict = match chunks.next().await.map_err(PutImageError::Stream)? {
            Some(chunk) => {
                // The probe gives up past PROBE_LIMIT bytes: never copy more than that.
                let take = chunk.length().min((PROBE_LIMIT as u32 + 1).saturating_sub(probed));
                probed += take;
                let verdict = probe.feed(&chunk.subarray(0, take).to_vec());
                head.push(chunk);
                verdict
            }
            None => match probe.finish() {
                Probe::NeedMore => Probe::Invalid(InvalidImage::UnknownFormat),
                done => done,
            },
        };
        match verdict {
            Probe::NeedMore => continue,
            Probe::Valid(info) => return Ok((info, head)),
            Probe::Invalid(why) => {
                chunks.cancel();
                return Err(PutImageError::NotImage(why));
            }
        }
    }
}

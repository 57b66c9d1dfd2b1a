//! Bytes that flow through the Worker without entering wasm memory (which
//! only grows): bodies are read chunk by chunk against a cap that holds with
//! or without `Content-Length`, and streams are pumped from a reader to a
//! writer on the JavaScript side. Only what must be looked at (a JSON body,
//! an image's first bytes) is copied into wasm.

use super::clock::now_ms;
use super::js_message;
use crate::domain::error::{AppError, AppResult};
use futures_util::future::{select, Either};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, ReadableStreamDefaultReader, TransformStream, WritableStreamDefaultWriter};
use worker::Delay;

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// More than the cap arrived (the stream was cancelled there).
    TooLarge { cap: u64 },
    /// Nothing arrived for too long.
    Stalled,
    /// The stream broke (the peer went away, the sink refused).
    Broken(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::TooLarge { cap } => write!(f, "more than {cap} bytes"),
            StreamError::Stalled => f.write_str("stalled"),
            StreamError::Broken(why) => write!(f, "broken: {why}"),
        }
    }
}

/// Awaits a JavaScript promise, with an optional deadline.
pub async fn settle(promise: Promise, timeout_ms: Option<u64>) -> Result<JsValue, StreamError> {
    let future = JsFuture::from(promise);
    let Some(ms) = timeout_ms else {
        return future.await.map_err(|e| StreamError::Broken(js_message(&e)));
    };
    match select(future, Delay::from(Duration::from_millis(ms))).await {
        Either::Left((result, _)) => result.map_err(|e| StreamError::Broken(js_message(&e))),
        Either::Right(_) => Err(StreamError::Stalled),
    }
}

/// The chunks of a readable stream, counted as they arrive.
pub struct Chunks {
    reader: ReadableStreamDefaultReader,
    seen: u64,
    cap: u64,
    /// How long one read may wait.
    read_timeout_ms: Option<u64>,
    /// When reading must have ended (Unix ms), however the bytes trickle.
    deadline: Option<i64>,
}

impl Chunks {
    pub fn new(stream: &ReadableStream, cap: u64, read_timeout_ms: Option<u64>) -> Chunks {
        Chunks { reader: stream.get_reader().unchecked_into(), seen: 0, cap, read_timeout_ms, deadline: None }
    }

    /// The same chunks, but reading stops (as stalled) at `deadline`.
    pub fn until(mut self, deadline: Option<i64>) -> Chunks {
        self.deadline = deadline;
        self
    }

    /// The next chunk (still a JavaScript array), or `None` at the end. Past
    /// the cap the stream is cancelled and the answer is `TooLarge`.
    pub async fn next(&mut self) -> Result<Option<Uint8Array>, StreamError> {
        let timeout = match self.deadline.map(|d| d - now_ms()) {
            Some(left) if left <= 0 => {
                self.cancel();
                return Err(StreamError::Stalled);
            }
            Some(left) => Some(self.read_timeout_ms.map_or(left as u64, |t| t.min(left as u64))),
            None => self.read_timeout_ms,
        };
        let result = match settle(self.reader.read(), timeout).await {
            Ok(r) => r,
            Err(e) => {
                self.cancel();
                return Err(e);
            }
        };
        if Reflect::get(&result, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()) == Some(true) {
            return Ok(None);
        }
        let value = Reflect::get(&result, &JsValue::from_str("value")).unwrap_or(JsValue::UNDEFINED);
        let chunk: Uint8Array = match value.dyn_into::<Uint8Array>() {
            Ok(c) => c,
            Err(other) => Uint8Array::new(&other),
        };
        self.seen += u64::from(chunk.length());
        if self.seen > self.cap {
            self.cancel();
            return Err(StreamError::TooLarge { cap: self.cap });
        }
        Ok(Some(chunk))
    }

    /// Stops reading; the source is told to stop sending.
    pub fn cancel(&self) {
        let _ = self.reader.cancel();
    }

    /// Gives the stream back (to be piped elsewhere from where reading stopped).
    pub fn release(self) {
        self.reader.release_lock();
    }
}

/// Reads a whole (small) stream into wasm, refusing past `cap` bytes.
pub async fn read_all(stream: &ReadableStream, cap: u64, read_timeout_ms: Option<u64>) -> Result<Vec<u8>, StreamError> {
    let mut chunks = Chunks::new(stream, cap, read_timeout_ms);
    let mut out = Vec::new();
    while let Some(chunk) = chunks.next().await? {
        let start = out.len();
        out.resize(start + chunk.length() as usize, 0);
        if let Some(tail) = out.get_mut(start..) {
            chunk.copy_to(tail);
        }
    }
    Ok(out)
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// A TransformStream's controller.
    type StreamController;
    #[wasm_bindgen(method, catch)]
    fn enqueue(this: &StreamController, chunk: &JsValue) -> Result<(), JsValue>;
    #[wasm_bindgen(method)]
    fn error(this: &StreamController, reason: &JsValue);
}

/// A stream passed through a byte counter that errors the stream the moment
/// more than `cap` bytes have gone through. The bytes are piped by the
/// runtime; wasm sees only each chunk's length.
pub struct Counted {
    pub readable: ReadableStream,
    seen: Rc<Cell<u64>>,
    cap: u64,
    piped: Promise,
    _counter: Closure<dyn FnMut(JsValue, JsValue)>,
}

impl Counted {
    pub fn new(source: &ReadableStream, cap: u64) -> AppResult<Counted> {
        let seen = Rc::new(Cell::new(0u64));
        let total = seen.clone();
        let counter = Closure::wrap(Box::new(move |chunk: JsValue, controller: JsValue| {
            let controller: StreamController = controller.unchecked_into();
            let len = Reflect::get(&chunk, &JsValue::from_str("byteLength")).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
            total.set(total.get() + len as u64);
            if total.get() > cap {
                controller.error(&JsValue::from_str("more bytes than allowed"));
            } else {
                let _ = controller.enqueue(&chunk);
            }
        }) as Box<dyn FnMut(JsValue, JsValue)>);
        let transformer = Object::new();
        let _ = Reflect::set(&transformer, &JsValue::from_str("transform"), counter.as_ref());
        let stream =
            TransformStream::new_with_transformer(&transformer).map_err(|e| AppError::internal(format!("stream: {}", js_message(&e))))?;
        let piped = source.pipe_to(&stream.writable());
        Ok(Counted { readable: stream.readable(), seen, cap, piped, _counter: counter })
    }

    pub fn over_cap(&self) -> bool {
        self.seen.get() > self.cap
    }

    /// Waits for the source to be fully piped (or to have failed).
    pub async fn finished(&self) -> Result<(), StreamError> {
        let done = settle(self.piped.clone(), None).await.map(|_| ());
        if self.over_cap() {
            return Err(StreamError::TooLarge { cap: self.cap });
        }
        done
    }
}

/// Writes one chunk (staying a JavaScript array) to `writer`.
pub async fn write(writer: &WritableStreamDefaultWriter, chunk: &Uint8Array) -> Result<(), StreamError> {
    settle(writer.write_with_chunk(chunk), None).await.map(|_| ())
}

/// `413 payload_too_large` for a body over its cap.
pub fn too_large(max: u64) -> AppError {
    AppError::new(crate::domain::error::ErrorCode::PayloadTooLarge, format!("The request body is larger than the limit of {max} bytes."))
        .with_details(serde_json::json!({ "max_bytes": max }))
}

/// A request body that could not be read: too large (413) or broken (400).
pub fn body_error(e: StreamError) -> AppError {
    match e {
        StreamError::TooLarge { cap } => too_large(cap),
        other => AppError::invalid_request("The request body could not be read.").with_internal(other.to_string()),
    }
}

/// Reads a request body whole, refusing past `cap` bytes as they arrive.
pub async fn read_request_body(body: Option<ReadableStream>, cap: u64) -> AppResult<Vec<u8>> {
    match body {
        None => Ok(Vec::new()),
        Some(stream) => read_all(&stream, cap, Some(30_000)).await.map_err(body_error),
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = digest, catch)]
    fn subtle_digest(algorithm: &str, data: &JsValue) -> Result<Promise, JsValue>;
}

/// SHA-256 of a Blob's bytes, hex, computed by WebCrypto on the JavaScript
/// side (the bytes do not enter wasm).
pub async fn sha256_hex_of(blob: &worker::web_sys::Blob) -> AppResult<String> {
    let fail = |e: StreamError| AppError::internal(format!("digest: {e}"));
    let buffer = settle(blob.array_buffer(), None).await.map_err(fail)?;
    let promise = subtle_digest("SHA-256", &buffer).map_err(|e| AppError::internal(format!("digest: {}", js_message(&e))))?;
    let digest = Uint8Array::new(&settle(promise, None).await.map_err(fail)?).to_vec();
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

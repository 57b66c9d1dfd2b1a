//! Outbound HTTP (`fetch`): every request the Worker makes to the internet
//! goes through here, with a deadline and our User-Agent, counted against the
//! invocation's subrequest budget and its six connections, and never panics.
//! URLs are read with the runtime's own WHATWG parser, the one `fetch` uses.

use super::log::{Connection, Log};
use super::streams::{read_all, settle, StreamError};
use crate::domain::kie::Transport;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::web_sys::{AbortController, Headers, ReadableStream, Request, RequestInit, Response};

pub const USER_AGENT: &str = concat!("banana-worker/", env!("CARGO_PKG_VERSION"));
/// JSON answers (Kie's, a probe's) are small; anything bigger is not one.
const MAX_SMALL_BODY: u64 = 4 * 1024 * 1024;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &Request) -> worker::js_sys::Promise;

    /// The runtime's WHATWG URL parser.
    #[wasm_bindgen(js_name = URL)]
    type WebUrl;
    #[wasm_bindgen(constructor, catch, js_class = "URL")]
    fn new(url: &str) -> Result<WebUrl, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn protocol(this: &WebUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn hostname(this: &WebUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn origin(this: &WebUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn pathname(this: &WebUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn search(this: &WebUrl) -> String;
}

/// A URL as `fetch` will read it.
pub struct ParsedUrl {
    /// `https:`, `http:`, …
    pub protocol: String,
    /// Normalised: lowercase, IPv4 in dotted decimal, IPv6 in brackets, compressed.
    pub hostname: String,
    pub origin: String,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The query without its `?`.
    pub query: String,
}

/// Parses `url` the way the runtime's `fetch` will; `None` if it cannot.
pub fn parse_url(url: &str) -> Option<ParsedUrl> {
    let u = WebUrl::new(url).ok()?;
    let search = u.search();
    Some(ParsedUrl {
        protocol: u.protocol(),
        hostname: u.hostname(),
        origin: u.origin(),
        path: u.pathname(),
        query: search.strip_prefix('?').unwrap_or(&search).to_string(),
    })
}

/// Headers with our User-Agent: Cloudflare in front of Kie answers 403 (1010)
/// to requests without one.
pub fn headers() -> Headers {
    let h = Headers::new().unwrap_or_else(|_| JsValue::from(worker::js_sys::Object::new()).unchecked_into());
    let _ = h.set("User-Agent", USER_AGENT);
    h
}

/// An answer whose body has not been read yet; it holds its connection.
pub struct Opened {
    pub status: u16,
    /// `Content-Length`, when the peer sent one.
    pub length: Option<u64>,
    pub body: Option<ReadableStream>,
    controller: Option<AbortController>,
    _connection: Connection,
}

impl Opened {
    /// Gives up on the body: whatever reads or pipes it fails.
    pub fn abort(&self) {
        if let Some(c) = &self.controller {
            c.abort();
        }
    }
}

/// Sends a request and waits (at most `timeout_ms`) for the answer's head.
pub async fn open(log: &Log, url: &str, method: &str, headers: Headers, body: Option<&str>, timeout_ms: u64) -> Result<Opened, Transport> {
    log.spend_subrequest("fetch").map_err(|e| Transport::Unreachable(e.internal.unwrap_or_default()))?;
    let connection = log.connection().await;
    let init = RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers);
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(b));
    }
    let controller = AbortController::new().ok();
    if let Some(c) = &controller {
        init.set_signal(Some(&c.signal()));
    }
    let request = Request::new_with_str_and_init(url, &init).map_err(|e| Transport::Unreachable(format!("bad request: {e:?}")))?;
    match settle(global_fetch(&request), Some(timeout_ms)).await {
        Ok(value) => {
            let response: Response = value.unchecked_into();
            let length = response.headers().get("Content-Length").ok().flatten().and_then(|v| v.trim().parse().ok());
            Ok(Opened { status: response.status(), length, body: response.body(), controller, _connection: connection })
        }
        Err(StreamError::Stalled) => {
            if let Some(c) = controller {
                c.abort();
            }
            Err(Transport::TimedOut)
        }
        Err(e) => Err(Transport::Unreachable(e.to_string())),
    }
}

/// Fetches `url` with a deadline, reading the (small) body whole.
pub async fn fetch(log: &Log, url: &str, method: &str, headers: Headers, body: Option<&str>, timeout_ms: u64) -> Transport {
    let opened = match open(log, url, method, headers, body, timeout_ms).await {
        Ok(o) => o,
        Err(t) => return t,
    };
    let bytes = match &opened.body {
        None => Ok(Vec::new()),
        Some(stream) => read_all(stream, MAX_SMALL_BODY, Some(timeout_ms)).await,
    };
    match bytes {
        Ok(body) => Transport::Response { status: opened.status, body },
        Err(StreamError::Stalled) => Transport::TimedOut,
        Err(e) => Transport::Unreachable(format!("body: {e}")),
    }
}

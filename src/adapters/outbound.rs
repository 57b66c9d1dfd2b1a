//! Outbound HTTP (`fetch`): every request the Worker makes to the internet
//! goes through here, with a deadline and our User-Agent, and never panics.

use crate::domain::kie::Transport;
use futures_util::future::{select, Either};
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

pub const USER_AGENT: &str = concat!("banana-worker/", env!("CARGO_PKG_VERSION"));

/// Headers with our User-Agent: Cloudflare in front of Kie answers 403 (1010)
/// to requests without one.
pub fn headers() -> Headers {
    let h = Headers::new();
    let _ = h.set("User-Agent", USER_AGENT);
    h
}

/// Fetches `url` with a deadline, reading the whole body.
pub async fn fetch(url: &str, method: Method, headers: Headers, body: Option<String>, timeout_ms: u64) -> Transport {
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(JsValue::from_str(&b)));
    }
    let request = match Request::new_with_init(url, &init) {
        Ok(r) => r,
        Err(e) => return Transport::Unreachable(format!("bad request: {e}")),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async move {
        let mut response = Fetch::Request(request).send_with_signal(&signal).await.map_err(|e| e.to_string())?;
        let status = response.status_code();
        let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>((status, body))
    };
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(Box::pin(exchange), Box::pin(timer)).await {
        Either::Left((Ok((status, body)), _)) => Transport::Response { status, body },
        Either::Left((Err(message), _)) => Transport::Unreachable(message),
        Either::Right(_) => {
            controller.abort();
            Transport::TimedOut
        }
    }
}

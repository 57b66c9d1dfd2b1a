//! HTTP to Kie. Every call is logged (operation, HTTP status, Kie code,
//! latency, outcome) without the key or the callback token.

use super::log::Log;
use crate::domain::kie::{classify_create, classify_record, parse_envelope, CreateOutcome, RecordOutcome, Transport};
use crate::domain::model::Family;
use futures_util::future::{select, Either};
use serde_json::{json, Value};
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

pub const USER_AGENT: &str = concat!("banana-worker/", env!("CARGO_PKG_VERSION"));

pub struct KieClient<'a> {
    pub base: &'a str,
    pub api_key: &'a str,
    pub timeout_ms: u64,
    pub log: &'a Log,
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// Fetches `url` with a deadline, reading the whole body; never panics.
pub async fn fetch_with_timeout(url: &str, method: Method, headers: Headers, body: Option<String>, timeout_ms: u64) -> Transport {
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

fn describe(t: &Transport) -> (Option<u16>, Option<i64>) {
    match t {
        Transport::Response { status, body } => (Some(*status), parse_envelope(body).map(|e| e.code)),
        _ => (None, None),
    }
}

/// Headers with our User-Agent: Kie's Cloudflare front answers 403 (1010) without one.
pub fn ua_headers() -> Headers {
    let h = Headers::new();
    let _ = h.set("User-Agent", USER_AGENT);
    h
}

impl KieClient<'_> {
    fn headers(&self, json_body: bool) -> Headers {
        let h = ua_headers();
        let _ = h.set("Authorization", &format!("Bearer {}", self.api_key));
        let _ = h.set("Accept", "application/json");
        if json_body {
            let _ = h.set("Content-Type", "application/json");
        }
        h
    }

    async fn call(&self, op: &str, method: Method, path_and_query: &str, body: Option<&Value>) -> Transport {
        let url = format!("{}{}", self.base, path_and_query);
        let started = now_ms();
        self.log.count_kie_call();
        let t = fetch_with_timeout(&url, method, self.headers(body.is_some()), body.map(Value::to_string), self.timeout_ms).await;
        let (http_status, kie_code) = describe(&t);
        let transport = match &t {
            Transport::Response { .. } => "response".to_string(),
            Transport::Unreachable(m) => format!("unreachable: {m}"),
            Transport::TimedOut => "timeout".to_string(),
        };
        self.log.info(
            "kie.call",
            &format!("kie {op}"),
            json!({ "kie_op": op, "kie_path": path_and_query.split('?').next(), "kie_http_status": http_status,
                    "kie_code": kie_code, "kie_latency_ms": now_ms() - started, "kie_transport": transport }),
        );
        t
    }

    pub async fn create(&self, family: Family, body: &Value) -> CreateOutcome {
        let t = self.call("create", Method::Post, family.create_path(), Some(body)).await;
        classify_create(&t)
    }

    pub async fn record(&self, family: Family, provider_task_id: &str) -> RecordOutcome {
        let path = format!("{}?taskId={}", family.record_path(), encode_query(provider_task_id));
        let t = self.call("record", Method::Get, &path, None).await;
        classify_record(family, &t)
    }

    /// The account's remaining Kie credits (free call); `Err` says why not.
    pub async fn credit(&self) -> Result<f64, String> {
        let t = self.call("credit", Method::Get, "/api/v1/chat/credit", None).await;
        match &t {
            Transport::Response { status, body } => match parse_envelope(body) {
                Some(env) if env.code == 200 => env.data.as_f64().ok_or_else(|| "credit answer had no number".into()),
                Some(env) => Err(format!("kie code {}: {}", env.code, env.msg)),
                None => Err(format!("kie http {status} with a non-JSON body")),
            },
            Transport::Unreachable(m) => Err(format!("kie unreachable: {m}")),
            Transport::TimedOut => Err("kie did not answer in time".into()),
        }
    }
}

/// Percent-encodes a query value (ids are hex, but never trust that).
pub fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

//! HTTP to Kie. Every call is logged (operation, HTTP status, Kie code,
//! latency, outcome) without the key or the callback token.

use super::clock::now_ms;
use super::log::Log;
use super::outbound;
use crate::domain::ids::ProviderTaskId;
use crate::domain::kie::{classify_create, classify_record, parse_envelope, CreateOutcome, RecordOutcome, Transport};
use crate::domain::model::Family;
use crate::domain::query::encode_query;
use serde_json::{json, Value};
use worker::web_sys::Headers;

pub struct KieClient<'a> {
    pub base: &'a str,
    pub api_key: &'a str,
    pub timeout_ms: u64,
    pub log: &'a Log,
}

impl KieClient<'_> {
    fn headers(&self, json_body: bool) -> Headers {
        let h = outbound::headers();
        let _ = h.set("Authorization", &format!("Bearer {}", self.api_key));
        let _ = h.set("Accept", "application/json");
        if json_body {
            let _ = h.set("Content-Type", "application/json");
        }
        h
    }

    async fn call(&self, op: &str, method: &str, path_and_query: &str, body: Option<&Value>) -> Transport {
        let url = format!("{}{}", self.base, path_and_query);
        let started = now_ms();
        self.log.count_kie_call();
        let body = body.map(Value::to_string);
        let t = outbound::fetch(self.log, &url, method, self.headers(body.is_some()), body.as_deref(), self.timeout_ms).await;
        let (http_status, kie_code) = match &t {
            Transport::Response { status, body } => (Some(*status), parse_envelope(body).map(|e| e.code)),
            _ => (None, None),
        };
        let transport = if matches!(t, Transport::Response { .. }) { "response".to_string() } else { t.to_string() };
        super::metrics::kie_call(op, &t, kie_code, now_ms() - started);
        self.log.info(
            "kie.call",
            &format!("kie {op}"),
            json!({ "kie_op": op, "kie_path": path_and_query.split('?').next(), "kie_http_status": http_status,
                    "kie_code": kie_code, "kie_latency_ms": now_ms() - started, "kie_transport": transport }),
        );
        t
    }

    pub async fn create(&self, family: Family, body: &Value) -> CreateOutcome {
        let t = self.call("create", "POST", family.create_path(), Some(body)).await;
        classify_create(&t)
    }

    pub async fn record(&self, family: Family, provider_task_id: &ProviderTaskId) -> RecordOutcome {
        let path = format!("{}?taskId={}", family.record_path(), encode_query(provider_task_id.as_str()));
        let t = self.call("record", "GET", &path, None).await;
        classify_record(family, &t)
    }

    /// The credit call's exchange as it happened (monitoring classifies it).
    pub async fn credit_call(&self) -> Transport {
        self.call("credit", "GET", "/api/v1/chat/credit", None).await
    }
}

//! HTTP to Stripe (through `outbound`). Every call is logged as `stripe.call`
//! (operation, path, HTTP status, latency, outcome) without the key or the body.

use super::clock::now_ms;
use super::log::Log;
use super::outbound;
use crate::domain::billing::BillingConfig;
use crate::domain::kie::Transport;
use crate::domain::stripe::{classify_session, classify_session_list, session_of_payment_path, CreatedSession, StripeOutcome};
use serde_json::{json, Value};

/// Stripe answers a Checkout Session in well under a second; a call still
/// open after this is given up (the order fails, nothing is granted).
const STRIPE_TIMEOUT_MS: u64 = 10_000;

pub struct StripeClient<'a> {
    base: &'a str,
    secret_key: &'a str,
    log: &'a Log,
}

impl<'a> StripeClient<'a> {
    /// The client for the configured Stripe account (key and API origin).
    pub fn new(billing: &'a BillingConfig, log: &'a Log) -> Self {
        StripeClient { base: &billing.api_base, secret_key: &billing.secret_key, log }
    }

    async fn call(&self, op: &str, method: &str, path: &str, form: Option<&str>, idempotency_key: Option<&str>) -> Transport {
        let headers = outbound::headers();
        let _ = headers.set("Authorization", &format!("Bearer {}", self.secret_key));
        let _ = headers.set("Accept", "application/json");
        if form.is_some() {
            let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
        }
        if let Some(key) = idempotency_key {
            let _ = headers.set("Idempotency-Key", key);
        }
        let started = now_ms();
        let t = outbound::fetch(self.log, &format!("{}{path}", self.base), method, headers, form, STRIPE_TIMEOUT_MS).await;
        let (status, transport) = match &t {
            Transport::Response { status, .. } => (Some(*status), "response".to_string()),
            other => (None, other.to_string()),
        };
        self.log.info(
            "stripe.call",
            &format!("stripe {op}"),
            json!({ "stripe_op": op, "stripe_path": path, "stripe_http_status": status, "stripe_latency_ms": now_ms() - started,
                    "stripe_transport": transport, "idempotency_key": idempotency_key }),
        );
        t
    }

    /// `POST /v1/checkout/sessions` with `form`, made once per `idempotency_key`
    /// at Stripe (a retry with the same key returns the same session).
    pub async fn create_checkout_session(&self, form: &str, idempotency_key: &str) -> StripeOutcome<CreatedSession> {
        match self.call("checkout_session", "POST", "/v1/checkout/sessions", Some(form), Some(idempotency_key)).await {
            Transport::Response { status, body } => classify_session(status, &body),
            other => StripeOutcome::Unavailable(other.to_string()),
        }
    }

    /// `GET /v1/checkout/sessions?payment_intent=…`: the Checkout Session a
    /// payment was made through (`None`: not through Checkout, or not a
    /// PaymentIntent id at all).
    pub async fn session_of_payment(&self, payment_intent: &str) -> StripeOutcome<Option<String>> {
        let Some(path) = session_of_payment_path(payment_intent) else { return StripeOutcome::Ok(None) };
        match self.call("session_of_payment", "GET", &path, None, None).await {
            Transport::Response { status, body } => classify_session_list(status, &body),
            other => StripeOutcome::Unavailable(other.to_string()),
        }
    }

    /// The cheapest authenticated call (`GET /v1/balance`): whether the key is
    /// accepted, and in which mode. `Err` says why not.
    pub async fn check_key(&self) -> Result<bool, String> {
        match self.call("balance", "GET", "/v1/balance", None, None).await {
            Transport::Response { status: 200, body } => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                Ok(v.get("livemode").and_then(Value::as_bool).unwrap_or(false))
            }
            Transport::Response { status, body } => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let code = v.pointer("/error/code").and_then(Value::as_str).unwrap_or("");
                Err(format!("Stripe answered HTTP {status} {code}").trim_end().to_string())
            }
            other => Err(format!("Stripe {other}")),
        }
    }
}

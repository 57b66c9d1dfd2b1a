//! Alert messages as their receivers want them: Slack (`{"text"}`), a
//! Feishu/Lark custom bot (`msg_type: text`, signed in the body when a secret
//! is set), or our JSON body signed in a header. And how to tell, from the
//! receiver's answer, whether the message arrived.

use super::config::AlertFormat;
use crate::domain::signature::hmac_sha256;
use crate::domain::time::rfc3339;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

/// The header that carries the signature of `json` deliveries.
pub const SIGNATURE_HEADER: &str = "X-Banana-Signature";
pub const EVENT_HEADER: &str = "X-Banana-Event";

/// One alert message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice<'a> {
    pub id: &'a str,
    pub condition: &'a str,
    /// `open` (the condition started) or `resolved` (it ended).
    pub state: &'a str,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    /// The start message, or the resolved message when `state` is `resolved`.
    pub message: &'a str,
}

/// Who sends, for the first words of every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender<'a> {
    pub service: &'a str,
    pub environment: &'a str,
    /// The operator dashboard (`<PUBLIC_BASE_URL>/admin`), when known.
    pub dashboard: Option<&'a str>,
}

/// A request ready to send: JSON body and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// The line a person reads in a chat.
pub fn text(sender: &Sender, notice: &Notice) -> String {
    let head = if notice.state == "resolved" { "" } else { "ALERT: " };
    let link = sender.dashboard.map(|d| format!("\nDashboard: {d}")).unwrap_or_default();
    format!("[{} · {}] {head}{}{link}", sender.service, sender.environment, notice.message)
}

/// Feishu's custom-bot signature: base64(HMAC-SHA256(key = "<timestamp>\n<secret>", message = "")).
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    STANDARD.encode(hmac_sha256(format!("{timestamp_s}\n{secret}").as_bytes(), b""))
}

/// Our `json` signature: hex(HMAC-SHA256(secret, "<timestamp>.<body>")), sent as `t=<timestamp>,v1=<hex>`.
pub fn json_signature(secret: &str, timestamp_s: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{timestamp_s}.{body}").as_bytes());
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp_s},v1={hex}")
}

pub fn render(format: AlertFormat, secret: Option<&str>, sender: &Sender, notice: &Notice, now_ms: i64) -> Outgoing {
    let now_s = now_ms / 1000;
    let text = text(sender, notice);
    match format {
        AlertFormat::Slack => Outgoing { body: json!({ "text": text }).to_string(), headers: Vec::new() },
        AlertFormat::Feishu => {
            let mut body = json!({ "msg_type": "text", "content": { "text": text } });
            if let (Some(secret), Some(o)) = (secret, body.as_object_mut()) {
                o.insert("timestamp".into(), json!(now_s.to_string()));
                o.insert("sign".into(), json!(feishu_sign(secret, now_s)));
            }
            Outgoing { body: body.to_string(), headers: Vec::new() }
        }
        AlertFormat::Json => {
            let event = if notice.state == "resolved" { "alert.resolved" } else { "alert.opened" };
            let body = json!({
                "type": event,
                "service": sender.service,
                "environment": sender.environment,
                "alert": {
                    "id": notice.id,
                    "condition": notice.condition,
                    "state": notice.state,
                    "started_at": rfc3339(notice.started_at),
                    "resolved_at": notice.resolved_at.map(rfc3339),
                    "message": notice.message,
                },
                "text": text,
                "dashboard": sender.dashboard,
                "sent_at": rfc3339(now_ms),
            })
            .to_string();
            let mut headers = vec![(EVENT_HEADER, event.to_string())];
            if let Some(secret) = secret {
                headers.push((SIGNATURE_HEADER, json_signature(secret, now_s, &body)));
            }
            Outgoing { body, headers }
        }
    }
}

/// Whether the receiver took the message; `Err` says why not, in words that
/// never contain the receiver's URL.
pub fn accepted(format: AlertFormat, status: u16, body: &[u8]) -> Result<(), String> {
    if !(200..300).contains(&status) {
        return Err(format!("http {status}"));
    }
    if format == AlertFormat::Feishu {
        // Feishu answers HTTP 200 with {"code": 0} on success and another code otherwise.
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let code = v.get("code").or_else(|| v.get("StatusCode")).and_then(Value::as_i64).unwrap_or(0);
        if code != 0 {
            let msg: String = v.get("msg").and_then(Value::as_str).unwrap_or("").chars().take(120).collect();
            return Err(format!("feishu code {code}: {msg}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDER: Sender = Sender { service: "banana-worker", environment: "production", dashboard: Some("https://w.example/admin") };
    const OPEN: Notice = Notice {
        id: "alr_1",
        condition: "kie_balance_low",
        state: "open",
        started_at: 1_786_428_635_123,
        resolved_at: None,
        message: "Kie balance below the warning threshold: 5 Kie credits left.",
    };

    #[test]
    fn slack_and_feishu_bodies() {
        let s = render(AlertFormat::Slack, Some("ignored"), &SENDER, &OPEN, 0);
        assert_eq!(
            s.body,
            r#"{"text":"[banana-worker · production] ALERT: Kie balance below the warning threshold: 5 Kie credits left.\nDashboard: https://w.example/admin"}"#
        );
        assert!(s.headers.is_empty());
        let f = render(AlertFormat::Feishu, None, &SENDER, &OPEN, 0);
        let v: Value = serde_json::from_str(&f.body).unwrap();
        assert_eq!(v["msg_type"], "text");
        assert!(v["content"]["text"].as_str().unwrap().contains("ALERT: Kie balance"));
        assert!(v.get("sign").is_none());
        let signed = render(AlertFormat::Feishu, Some("feishu-secret"), &SENDER, &OPEN, 1_700_000_000_500);
        let v: Value = serde_json::from_str(&signed.body).unwrap();
        assert_eq!(v["timestamp"], "1700000000");
        assert_eq!(v["sign"], feishu_sign("feishu-secret", 1_700_000_000));
    }

    #[test]
    fn feishu_signature_follows_the_documented_algorithm() {
        // HMAC-SHA256 with key "1599360473\ndemo" over the empty message, base64.
        assert_eq!(feishu_sign("demo", 1_599_360_473), STANDARD.encode(hmac_sha256(b"1599360473\ndemo", b"")));
        assert_ne!(feishu_sign("demo", 1_599_360_473), feishu_sign("demo", 1_599_360_474));
    }

    #[test]
    fn json_body_and_signature() {
        let resolved = Notice { state: "resolved", resolved_at: Some(1_786_428_700_000), message: "x — resolved after 1 min.", ..OPEN };
        let out = render(AlertFormat::Json, Some("json-secret"), &SENDER, &resolved, 1_786_428_700_000);
        let v: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(v["type"], "alert.resolved");
        assert_eq!(v["alert"]["condition"], "kie_balance_low");
        assert_eq!(v["alert"]["started_at"], "2026-08-11T06:10:35.123Z");
        assert_eq!(v["alert"]["resolved_at"], "2026-08-11T06:11:40.000Z");
        assert_eq!(v["text"], "[banana-worker · production] x — resolved after 1 min.\nDashboard: https://w.example/admin");
        assert_eq!(out.headers[0], (EVENT_HEADER, "alert.resolved".to_string()));
        let (name, sig) = &out.headers[1];
        assert_eq!(*name, SIGNATURE_HEADER);
        assert_eq!(*sig, json_signature("json-secret", 1_786_428_700, &out.body));
        assert!(sig.starts_with("t=1786428700,v1=") && sig.len() == "t=1786428700,v1=".len() + 64);
        assert_eq!(json_signature("k", 1, "{}"), json_signature("k", 1, "{}"));
        assert_ne!(json_signature("k", 1, "{}"), json_signature("k", 1, "{ }"));
    }

    #[test]
    fn receiver_answers() {
        assert_eq!(accepted(AlertFormat::Slack, 200, b"ok"), Ok(()));
        assert_eq!(accepted(AlertFormat::Slack, 503, b""), Err("http 503".into()));
        assert_eq!(accepted(AlertFormat::Feishu, 200, br#"{"code":0,"msg":"success","data":{}}"#), Ok(()));
        assert_eq!(accepted(AlertFormat::Feishu, 200, br#"{"StatusCode":0}"#), Ok(()));
        assert_eq!(
            accepted(AlertFormat::Feishu, 200, br#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour"}"#),
            Err("feishu code 19021: sign match fail or timestamp is not within one hour".into())
        );
        assert_eq!(accepted(AlertFormat::Json, 204, b""), Ok(()));
    }
}

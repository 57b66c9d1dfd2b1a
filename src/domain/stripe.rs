//! Stripe, as far as this service speaks it: the webhook signature
//! (`Stripe-Signature`), the events we act on, the form body of a Checkout
//! Session and Stripe's answer to it. No I/O: time comes in as an argument.

use super::signature::{ct_eq, hmac_sha256};
use serde_json::Value;

/// How far a webhook's timestamp may be from our clock, in either direction.
pub const SIGNATURE_TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    MissingHeader,
    NoTimestamp,
    NoSignature,
    Mismatch,
    TooOld,
    FromTheFuture,
}

impl SignatureError {
    /// Why, for the log line and the 400 answer (never a secret or a digest).
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::MissingHeader => "no Stripe-Signature header",
            SignatureError::NoTimestamp => "Stripe-Signature has no valid t= timestamp",
            SignatureError::NoSignature => "Stripe-Signature has no v1= signature",
            SignatureError::Mismatch => "no v1 signature matches the body and the webhook secret",
            SignatureError::TooOld => "the signature timestamp is more than 300 s in the past",
            SignatureError::FromTheFuture => "the signature timestamp is more than 300 s in the future",
        }
    }
}

/// Lowercase hex of HMAC-SHA256(`secret`, `"<t>.<payload>"`): what Stripe puts in `v1=`.
/// The key is the whole `whsec_…` string, as Stripe's libraries use it.
pub fn signature_hex(secret: &str, timestamp: &str, payload: &[u8]) -> String {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + payload.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(payload);
    hmac_sha256(secret.as_bytes(), &message).iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…][,v0=…]` over the
/// raw body. Any `v1` may match (Stripe sends several while a secret is being
/// rolled); every candidate is compared in constant time. The timestamp must be
/// within `tolerance_s` of `now_s` on both sides. Returns the timestamp.
pub fn verify_signature(secret: &str, header: Option<&str>, payload: &[u8], now_s: i64, tolerance_s: i64) -> Result<i64, SignatureError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(SignatureError::MissingHeader)?;
    let mut timestamp: Option<&str> = None;
    let mut candidates: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.split_once('=') else { continue };
        match k.trim() {
            "t" if timestamp.is_none() => timestamp = Some(v.trim()),
            "v1" => candidates.push(v.trim()),
            _ => {}
        }
    }
    let t_text = timestamp.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && t.len() <= 12);
    let t_text = t_text.ok_or(SignatureError::NoTimestamp)?;
    let t: i64 = t_text.parse().map_err(|_| SignatureError::NoTimestamp)?;
    if candidates.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let expected = signature_hex(secret, t_text, payload);
    // No early exit: every candidate is compared.
    let matched = candidates.iter().fold(false, |acc, c| ct_eq(expected.as_bytes(), c.as_bytes()) | acc);
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now_s - t > tolerance_s {
        return Err(SignatureError::TooOld);
    }
    if t - now_s > tolerance_s {
        return Err(SignatureError::FromTheFuture);
    }
    Ok(t)
}

/// What an event asks of us. Everything is read from the event's own object;
/// the order is found by the ids we stored, never by the event's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeAction {
    /// `checkout.session.completed` with `payment_status: paid`, or
    /// `checkout.session.async_payment_succeeded`: grant the order's credits.
    Paid { session_id: String, payment_intent: Option<String>, amount_total: Option<i64>, currency: Option<String> },
    /// `checkout.session.completed` whose payment is still on its way (bank
    /// debits, vouchers): wait for `async_payment_succeeded` or `_failed`.
    Processing { session_id: String, payment_intent: Option<String> },
    /// `checkout.session.async_payment_failed` or `checkout.session.expired`.
    Closed { session_id: String, why: CloseReason },
    /// `charge.refunded`: `amount_refunded` is cumulative over the charge's refunds.
    Refunded { payment_intent: String, charge_id: String, amount_refunded: i64, refund_id: Option<String> },
    /// `charge.dispute.created` or `charge.dispute.funds_withdrawn` (keyed by the dispute).
    Disputed { payment_intent: String, dispute_id: String, amount: i64 },
    /// A type we act on without a field we need (a charge not made through
    /// a PaymentIntent, say): answered 200 and remembered, logged, nothing changes.
    Unusable(&'static str),
    /// Anything else: answered 200 and remembered, nothing changes.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PaymentFailed,
    Expired,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PaymentFailed => "payment_failed",
            CloseReason::Expired => "expired",
        }
    }
}

/// A verified event: its id (for replay protection), its type and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub livemode: bool,
    pub action: StripeAction,
}

/// A Stripe id of one of the shapes we store (`cs_…`, `pi_…`, `ch_…`, `re_…`, `dp_…`, `evt_…`).
fn stripe_id(v: Option<&Value>) -> Option<String> {
    // Expanded objects carry their id inside.
    let s = match v? {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("id")?.as_str()?,
        _ => return None,
    };
    let ok = (3..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && s.contains('_');
    ok.then(|| s.to_string())
}

fn whole(v: Option<&Value>) -> Option<i64> {
    v?.as_i64().filter(|n| *n >= 0)
}

/// Parses a verified event body. `None` when it is not an event at all (no
/// `evt_` id or no type).
pub fn parse_event(body: &[u8]) -> Option<StripeEvent> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let id = stripe_id(v.get("id")).filter(|id| id.starts_with("evt_"))?;
    let kind = v.get("type")?.as_str()?.to_string();
    let livemode = v.get("livemode").and_then(Value::as_bool).unwrap_or(false);
    let object = v.pointer("/data/object").unwrap_or(&Value::Null);
    let action = action(&kind, object);
    Some(StripeEvent { id, kind, livemode, action })
}

/// What an event of type `kind` about `object` asks of us.
fn action(kind: &str, object: &Value) -> StripeAction {
    let field = |name: &str| object.get(name);
    let session_id = || stripe_id(field("id")).filter(|s| s.starts_with("cs_"));
    let unusable = StripeAction::Unusable;
    match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let Some(session_id) = session_id() else { return unusable("no checkout session id") };
            let payment_intent = stripe_id(field("payment_intent"));
            let paid =
                kind == "checkout.session.async_payment_succeeded" || field("payment_status").and_then(Value::as_str) == Some("paid");
            if paid {
                StripeAction::Paid {
                    session_id,
                    payment_intent,
                    amount_total: whole(field("amount_total")),
                    currency: field("currency").and_then(Value::as_str).map(str::to_ascii_lowercase),
                }
            } else {
                StripeAction::Processing { session_id, payment_intent }
            }
        }
        "checkout.session.async_payment_failed" | "checkout.session.expired" => {
            let Some(session_id) = session_id() else { return unusable("no checkout session id") };
            let why = if kind == "checkout.session.expired" { CloseReason::Expired } else { CloseReason::PaymentFailed };
            StripeAction::Closed { session_id, why }
        }
        "charge.refunded" => {
            // The newest refund, when the event carries the list (older API versions do).
            let refund_id = object.pointer("/refunds/data/0/id").and_then(|r| stripe_id(Some(r)));
            match (stripe_id(field("payment_intent")), stripe_id(field("id")), whole(field("amount_refunded"))) {
                (Some(payment_intent), Some(charge_id), Some(amount_refunded)) => {
                    StripeAction::Refunded { payment_intent, charge_id, amount_refunded, refund_id }
                }
                _ => unusable("a charge without payment_intent, id or amount_refunded"),
            }
        }
        "charge.dispute.created" | "charge.dispute.funds_withdrawn" => {
            let dispute_id = stripe_id(field("id")).filter(|d| d.starts_with("dp_") || d.starts_with("du_"));
            match (stripe_id(field("payment_intent")), dispute_id, whole(field("amount"))) {
                (Some(payment_intent), Some(dispute_id), Some(amount)) => StripeAction::Disputed { payment_intent, dispute_id, amount },
                _ => unusable("a dispute without payment_intent, id or amount"),
            }
        }
        _ => StripeAction::Ignored,
    }
}

/// What Checkout needs to know about one purchase.
pub struct CheckoutRequest<'a> {
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub credits: i64,
    pub amount: i64,
    pub currency: &'a str,
    /// Where the person comes back: our public origin.
    pub return_origin: &'a str,
    /// When Stripe should close the session (Unix s; 30 min to 24 h ahead).
    pub expires_at_s: i64,
}

/// Percent-encodes a form value (RFC 3986 unreserved characters stay).
fn form_value(v: &str) -> String {
    super::query::encode_query(v)
}

/// The `application/x-www-form-urlencoded` body of `POST /v1/checkout/sessions`:
/// one line item priced inline, our order id as `client_reference_id` and in
/// the metadata of both the session and its PaymentIntent, and return URLs on
/// our own origin. Keys keep their brackets, as Stripe's libraries send them.
pub fn checkout_form(r: &CheckoutRequest<'_>) -> String {
    let success = format!("{}/?checkout=success&order={}", r.return_origin, r.order_id);
    let cancel = format!("{}/?checkout=cancel&order={}", r.return_origin, r.order_id);
    let name = if r.credits == 1 { "1 credit".to_string() } else { format!("{} credits", r.credits) };
    let fields: [(&str, String); 13] = [
        ("mode", "payment".into()),
        ("success_url", success),
        ("cancel_url", cancel),
        ("client_reference_id", r.order_id.into()),
        ("metadata[order_id]", r.order_id.into()),
        ("metadata[user_id]", r.user_id.into()),
        ("payment_intent_data[metadata][order_id]", r.order_id.into()),
        ("line_items[0][quantity]", "1".into()),
        ("line_items[0][price_data][currency]", r.currency.into()),
        ("line_items[0][price_data][unit_amount]", r.amount.to_string()),
        ("line_items[0][price_data][product_data][name]", name),
        ("expires_at", r.expires_at_s.to_string()),
        ("submit_type", "pay".into()),
    ];
    fields.iter().map(|(k, v)| format!("{k}={}", form_value(v))).collect::<Vec<_>>().join("&")
}

/// A Checkout Session Stripe created for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    pub id: String,
    pub url: String,
    pub expires_at_s: Option<i64>,
}

/// How a call to Stripe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeOutcome<T> {
    Ok(T),
    /// Stripe answered and said no (4xx other than 429): our request or our key is wrong.
    Refused {
        status: u16,
        error_type: String,
        error_code: String,
    },
    /// Stripe could not be reached, timed out, was overloaded (429, 5xx) or
    /// answered something that is not a session.
    Unavailable(String),
}

/// `type` and `code` of Stripe's error body, for the log (never its message
/// verbatim: it may quote what we sent).
fn error_fields(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").chars().take(64).collect::<String>();
    (text("/error/type"), text("/error/code"))
}

/// Stripe's answer by its status: a 2xx body read by `read` (`Err` names
/// what it lacked), 429 and 5xx worth asking again later, anything else a
/// refusal.
fn classify<T>(status: u16, body: &[u8], read: impl FnOnce(&Value) -> Result<T, &'static str>) -> StripeOutcome<T> {
    match status {
        200..=299 => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            match read(&v) {
                Ok(found) => StripeOutcome::Ok(found),
                Err(lacks) => StripeOutcome::Unavailable(format!("http {status} without {lacks}")),
            }
        }
        429 | 500.. => StripeOutcome::Unavailable(format!("http {status}")),
        _ => {
            let (error_type, error_code) = error_fields(body);
            StripeOutcome::Refused { status, error_type, error_code }
        }
    }
}

/// Reads Stripe's answer to `POST /v1/checkout/sessions`.
pub fn classify_session(status: u16, body: &[u8]) -> StripeOutcome<CreatedSession> {
    classify(status, body, |v| {
        let id = stripe_id(v.get("id")).filter(|id| id.starts_with("cs_"));
        let url = v.get("url").and_then(Value::as_str).filter(|u| u.starts_with("https://") || u.starts_with("http://"));
        match (id, url) {
            (Some(id), Some(url)) if url.len() <= 4096 => {
                Ok(CreatedSession { id, url: url.to_string(), expires_at_s: v.get("expires_at").and_then(Value::as_i64) })
            }
            _ => Err("a session id and url"),
        }
    })
}

/// The path that lists the Checkout Session a PaymentIntent belongs to;
/// `None` for anything that is not a PaymentIntent id (nothing to ask).
pub fn session_of_payment_path(payment_intent: &str) -> Option<String> {
    let well_formed = payment_intent.starts_with("pi_")
        && payment_intent.len() <= 255
        && payment_intent.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    well_formed.then(|| format!("/v1/checkout/sessions?payment_intent={payment_intent}&limit=1"))
}

/// Reads Stripe's answer to that list: the session's id, or `None` when the
/// payment was not made through Checkout.
pub fn classify_session_list(status: u16, body: &[u8]) -> StripeOutcome<Option<String>> {
    classify(status, body, |v| match v.get("data").and_then(Value::as_array) {
        Some(list) => Ok(list.first().and_then(|s| stripe_id(s.get("id"))).filter(|id| id.starts_with("cs_"))),
        None => Err("a list"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the official `stripe` npm library (23.1.0):
    // webhooks.generateTestHeaderString({payload: '{}', secret: 'whsec_abc', timestamp: 1000})
    const ORACLE: &str = "t=1000,v1=98a1928daba8018f8d66b7c9d1a28b56a2582a23722b07bc005287106ba33eb1";

    #[test]
    fn signature_matches_the_official_library() {
        assert_eq!(signature_hex("whsec_abc", "1000", b"{}"), ORACLE.split("v1=").nth(1).unwrap());
        assert_eq!(verify_signature("whsec_abc", Some(ORACLE), b"{}", 1000, 300), Ok(1000));
    }

    #[test]
    fn any_v1_may_match_and_other_schemes_are_ignored() {
        let good = signature_hex("whsec_abc", "1000", b"{}");
        let header = format!("t=1000,v0=abc,v1={},v1={good}", "0".repeat(64));
        assert_eq!(verify_signature("whsec_abc", Some(&header), b"{}", 1000, 300), Ok(1000));
        let header = format!("t=1000,v0={good}");
        assert_eq!(verify_signature("whsec_abc", Some(&header), b"{}", 1000, 300), Err(SignatureError::NoSignature));
    }

    #[test]
    fn the_whole_body_and_the_whole_secret_are_signed() {
        assert_eq!(verify_signature("whsec_abc", Some(ORACLE), b"{ }", 1000, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature("abc", Some(ORACLE), b"{}", 1000, 300), Err(SignatureError::Mismatch));
        // The timestamp is part of what is signed.
        let moved = ORACLE.replace("t=1000", "t=1001");
        assert_eq!(verify_signature("whsec_abc", Some(&moved), b"{}", 1000, 300), Err(SignatureError::Mismatch));
        let upper = ORACLE.to_uppercase().replace("T=", "t=").replace("V1=", "v1=");
        assert_eq!(verify_signature("whsec_abc", Some(&upper), b"{}", 1000, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn the_timestamp_is_held_on_both_sides() {
        assert_eq!(verify_signature("whsec_abc", Some(ORACLE), b"{}", 1300, 300), Ok(1000));
        assert_eq!(verify_signature("whsec_abc", Some(ORACLE), b"{}", 1301, 300), Err(SignatureError::TooOld));
        assert_eq!(verify_signature("whsec_abc", Some(ORACLE), b"{}", 700, 300), Ok(1000));
        assert_eq!(verify_signature("whsec_abc", Some(ORACLE), b"{}", 699, 300), Err(SignatureError::FromTheFuture));
    }

    #[test]
    fn malformed_headers_say_why() {
        let v = |h: Option<&str>| verify_signature("whsec_abc", h, b"{}", 1000, 300);
        assert_eq!(v(None), Err(SignatureError::MissingHeader));
        assert_eq!(v(Some("  ")), Err(SignatureError::MissingHeader));
        assert_eq!(v(Some("v1=abc")), Err(SignatureError::NoTimestamp));
        assert_eq!(v(Some("t=-5,v1=abc")), Err(SignatureError::NoTimestamp));
        assert_eq!(v(Some("t=soon,v1=abc")), Err(SignatureError::NoTimestamp));
        assert_eq!(v(Some("t=1000")), Err(SignatureError::NoSignature));
        assert_eq!(v(Some("garbage")), Err(SignatureError::NoTimestamp));
        for e in [SignatureError::Mismatch, SignatureError::TooOld] {
            assert!(!e.reason().contains("whsec"));
        }
    }

    fn event(kind: &str, object: Value) -> Vec<u8> {
        serde_json::json!({ "id": "evt_1", "object": "event", "type": kind, "livemode": false, "data": { "object": object } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn checkout_events_grant_only_when_paid() {
        let paid = event(
            "checkout.session.completed",
            serde_json::json!({ "id": "cs_test_a1", "object": "checkout.session", "payment_status": "paid",
                                "payment_intent": "pi_1", "amount_total": 500, "currency": "USD",
                                "metadata": { "order_id": "ord_someone_else" } }),
        );
        let e = parse_event(&paid).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(
            e.action,
            StripeAction::Paid {
                session_id: "cs_test_a1".into(),
                payment_intent: Some("pi_1".into()),
                amount_total: Some(500),
                currency: Some("usd".into())
            }
        );
        let unpaid = event(
            "checkout.session.completed",
            serde_json::json!({ "id": "cs_test_a1", "payment_status": "unpaid", "payment_intent": { "id": "pi_2" } }),
        );
        assert_eq!(
            parse_event(&unpaid).unwrap().action,
            StripeAction::Processing { session_id: "cs_test_a1".into(), payment_intent: Some("pi_2".into()) }
        );
        let no_payment =
            event("checkout.session.completed", serde_json::json!({ "id": "cs_test_a1", "payment_status": "no_payment_required" }));
        assert!(matches!(parse_event(&no_payment).unwrap().action, StripeAction::Processing { .. }));
        let later = event("checkout.session.async_payment_succeeded", serde_json::json!({ "id": "cs_test_a1", "payment_status": "paid" }));
        assert!(matches!(parse_event(&later).unwrap().action, StripeAction::Paid { .. }));
        let failed = event("checkout.session.async_payment_failed", serde_json::json!({ "id": "cs_test_a1" }));
        assert_eq!(
            parse_event(&failed).unwrap().action,
            StripeAction::Closed { session_id: "cs_test_a1".into(), why: CloseReason::PaymentFailed }
        );
        let expired = event("checkout.session.expired", serde_json::json!({ "id": "cs_test_a1" }));
        assert_eq!(
            parse_event(&expired).unwrap().action,
            StripeAction::Closed { session_id: "cs_test_a1".into(), why: CloseReason::Expired }
        );
        // A session event without a session id is one we cannot act on.
        assert!(matches!(
            parse_event(&event("checkout.session.completed", serde_json::json!({ "payment_status": "paid" }))).unwrap().action,
            StripeAction::Unusable(_)
        ));
    }

    #[test]
    fn refunds_and_disputes_carry_their_keys() {
        let refunded = event(
            "charge.refunded",
            serde_json::json!({ "id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount": 500, "amount_refunded": 250,
                                "refunds": { "data": [{ "id": "re_2" }, { "id": "re_1" }] } }),
        );
        assert_eq!(
            parse_event(&refunded).unwrap().action,
            StripeAction::Refunded {
                payment_intent: "pi_1".into(),
                charge_id: "ch_1".into(),
                amount_refunded: 250,
                refund_id: Some("re_2".into())
            }
        );
        // Newer API versions do not list the refunds on the charge.
        let bare = event("charge.refunded", serde_json::json!({ "id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 500 }));
        assert!(matches!(parse_event(&bare).unwrap().action, StripeAction::Refunded { refund_id: None, amount_refunded: 500, .. }));
        let dispute =
            event("charge.dispute.created", serde_json::json!({ "id": "dp_1", "charge": "ch_1", "payment_intent": "pi_1", "amount": 500 }));
        assert_eq!(
            parse_event(&dispute).unwrap().action,
            StripeAction::Disputed { payment_intent: "pi_1".into(), dispute_id: "dp_1".into(), amount: 500 }
        );
        let negative = event("charge.refunded", serde_json::json!({ "id": "ch_1", "payment_intent": "pi_1", "amount_refunded": -1 }));
        assert!(matches!(parse_event(&negative).unwrap().action, StripeAction::Unusable(_)));
        let legacy = event("charge.refunded", serde_json::json!({ "id": "ch_1", "payment_intent": null, "amount_refunded": 100 }));
        assert!(matches!(parse_event(&legacy).unwrap().action, StripeAction::Unusable(_)));
    }

    #[test]
    fn unknown_types_are_ignored_and_non_events_refused() {
        assert_eq!(parse_event(&event("customer.created", serde_json::json!({ "id": "cus_1" }))).unwrap().action, StripeAction::Ignored);
        assert_eq!(parse_event(b"not json"), None);
        assert_eq!(parse_event(br#"{"id":"evt_1"}"#), None);
        assert_eq!(parse_event(br#"{"id":"nope","type":"x"}"#), None);
        assert_eq!(parse_event(br#"{"id":"evt_1'; DROP","type":"x"}"#), None);
    }

    #[test]
    fn the_checkout_form_names_our_order_and_prices_inline() {
        let form = checkout_form(&CheckoutRequest {
            order_id: "ord_abc",
            user_id: "usr_def",
            credits: 100,
            amount: 500,
            currency: "usd",
            return_origin: "https://w.example",
            expires_at_s: 1_800_000_000,
        });
        let pairs = super::super::query::parse_query(&form);
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("mode"), Some("payment"));
        assert_eq!(get("client_reference_id"), Some("ord_abc"));
        assert_eq!(get("metadata[order_id]"), Some("ord_abc"));
        assert_eq!(get("payment_intent_data[metadata][order_id]"), Some("ord_abc"));
        assert_eq!(get("line_items[0][price_data][unit_amount]"), Some("500"));
        assert_eq!(get("line_items[0][price_data][currency]"), Some("usd"));
        assert_eq!(get("line_items[0][price_data][product_data][name]"), Some("100 credits"));
        assert_eq!(get("success_url"), Some("https://w.example/?checkout=success&order=ord_abc"));
        assert_eq!(get("cancel_url"), Some("https://w.example/?checkout=cancel&order=ord_abc"));
        assert_eq!(get("expires_at"), Some("1800000000"));
        assert!(form.contains("success_url=https%3A%2F%2Fw.example%2F%3Fcheckout%3Dsuccess%26order%3Dord_abc"));
    }

    #[test]
    fn session_answers_are_classified() {
        let ok = br#"{"id":"cs_test_1","object":"checkout.session","url":"https://checkout.stripe.com/c/pay/cs_test_1","expires_at":1800000000}"#;
        assert_eq!(
            classify_session(200, ok),
            StripeOutcome::Ok(CreatedSession {
                id: "cs_test_1".into(),
                url: "https://checkout.stripe.com/c/pay/cs_test_1".into(),
                expires_at_s: Some(1_800_000_000)
            })
        );
        assert!(matches!(classify_session(200, br#"{"id":"cs_1"}"#), StripeOutcome::Unavailable(_)));
        assert!(matches!(classify_session(200, br#"{"id":"cs_1","url":"javascript:alert(1)"}"#), StripeOutcome::Unavailable(_)));
        assert!(matches!(classify_session(500, b""), StripeOutcome::Unavailable(_)));
        assert!(matches!(classify_session(429, b""), StripeOutcome::Unavailable(_)));
        assert_eq!(
            classify_session(401, br#"{"error":{"type":"invalid_request_error","code":"api_key_invalid","message":"Invalid API Key provided: sk_test_****"}}"#),
            StripeOutcome::Refused { status: 401, error_type: "invalid_request_error".into(), error_code: "api_key_invalid".into() }
        );
    }

    #[test]
    fn the_session_of_a_payment_is_asked_for_and_read() {
        assert_eq!(session_of_payment_path("pi_3AbC_9").as_deref(), Some("/v1/checkout/sessions?payment_intent=pi_3AbC_9&limit=1"));
        for bad in ["", "ch_1", "pi_1&limit=100", "pi_1/../v1/balance", "pi_ 1"] {
            assert_eq!(session_of_payment_path(bad), None, "{bad}");
        }
        let found = br#"{"object":"list","data":[{"id":"cs_test_1","object":"checkout.session"}],"has_more":false}"#;
        assert_eq!(classify_session_list(200, found), StripeOutcome::Ok(Some("cs_test_1".into())));
        assert_eq!(classify_session_list(200, br#"{"object":"list","data":[]}"#), StripeOutcome::Ok(None));
        assert!(matches!(classify_session_list(200, b"<html>"), StripeOutcome::Unavailable(_)));
        assert!(matches!(classify_session_list(503, b""), StripeOutcome::Unavailable(_)));
        assert!(matches!(classify_session_list(401, b"{}"), StripeOutcome::Refused { status: 401, .. }));
    }
}

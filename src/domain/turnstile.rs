//! Cloudflare Turnstile, the human check on a first sign-in: the siteverify
//! request the server sends and the answer it gets.
//! <https://developers.cloudflare.com/turnstile/get-started/server-side-validation/>

use super::query::encode_query;
use serde_json::Value;

pub const DEFAULT_VERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// The widget's `action`, checked in the answer when the answer names one.
pub const ACTION: &str = "signup";

/// A token as the widget hands it over (Cloudflare: at most 2048 characters).
pub fn token_ok(token: &str) -> bool {
    (1..=2048).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The form body of a siteverify call.
pub fn siteverify_body(secret: &str, token: &str, remote_ip: Option<&str>) -> String {
    let mut body = format!("secret={}&response={}", encode_query(secret), encode_query(token));
    if let Some(ip) = remote_ip {
        body.push_str(&format!("&remoteip={}", encode_query(ip)));
    }
    body
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// Turnstile's error codes (`invalid-input-response`, `timeout-or-duplicate`…),
    /// or `action-mismatch`.
    Failed(Vec<String>),
}

/// Reads siteverify's answer; `Err` when it is not an answer at all.
pub fn parse_siteverify(status: u16, body: &[u8]) -> Result<Verdict, String> {
    if status != 200 {
        return Err(format!("siteverify HTTP {status}"));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| "siteverify answer is not JSON".to_string())?;
    let codes: Vec<String> = doc
        .get("error-codes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|s| s.chars().take(64).collect()).collect())
        .unwrap_or_default();
    match doc.get("success").and_then(Value::as_bool) {
        Some(true) => match doc.get("action").and_then(Value::as_str) {
            Some(a) if !a.is_empty() && a != ACTION => Ok(Verdict::Failed(vec!["action-mismatch".into()])),
            _ => Ok(Verdict::Passed),
        },
        Some(false) => Ok(Verdict::Failed(codes)),
        None => Err("siteverify answer without success".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siteverify_answers_from_the_documentation() {
        let ok = br#"{"success":true,"challenge_ts":"2022-02-28T15:14:30.096Z","hostname":"example.com","error-codes":[],"action":"signup","cdata":""}"#;
        assert_eq!(parse_siteverify(200, ok), Ok(Verdict::Passed));
        let bad = br#"{"success":false,"error-codes":["invalid-input-response"]}"#;
        assert_eq!(parse_siteverify(200, bad), Ok(Verdict::Failed(vec!["invalid-input-response".into()])));
        let other_action = br#"{"success":true,"action":"login","error-codes":[]}"#;
        assert_eq!(parse_siteverify(200, other_action), Ok(Verdict::Failed(vec!["action-mismatch".into()])));
        assert!(parse_siteverify(500, b"{}").is_err());
        assert!(parse_siteverify(200, b"<html>").is_err());
        assert!(parse_siteverify(200, b"{}").is_err());
    }

    #[test]
    fn the_request_and_tokens() {
        assert_eq!(siteverify_body("0x4AAA", "tok en", Some("203.0.113.9")), "secret=0x4AAA&response=tok%20en&remoteip=203.0.113.9");
        assert_eq!(siteverify_body("s", "t", None), "secret=s&response=t");
        assert!(token_ok("0.abc-_DEF"));
        assert!(!token_ok(""));
        assert!(!token_ok(&"a".repeat(2049)));
        assert!(!token_ok("a b"));
    }
}

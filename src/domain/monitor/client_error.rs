//! Error reports from browsers (`POST /api/client-errors`): what is kept of
//! them for the `client.error` log line. Query strings and fragments are cut
//! from URLs (they can carry signatures and tokens), key- and token-like
//! strings are redacted, and every field is capped.

use crate::domain::error::{AppError, AppResult};
use serde_json::Value;

pub const MAX_MESSAGE_CHARS: usize = 500;
pub const MAX_STACK_CHARS: usize = 2_000;
pub const MAX_URL_CHARS: usize = 300;
/// Runs of token characters at least this long are redacted.
const SECRET_RUN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReport {
    pub message: String,
    /// The page's path (no origin, query or fragment).
    pub url: String,
    pub stack: Option<String>,
    /// The `X-Request-Id` of a failed API call, when the report is about one.
    pub request_id: Option<String>,
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '/' | '=' | '.' | '%')
}

/// Cuts `?…` and `#…` off URL-like words and redacts secrets, then caps the length.
pub fn scrub(input: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(input.len().min(max_chars * 4));
    let mut chars = input.chars().peekable();
    let mut in_url = false;
    while let Some(c) = chars.next() {
        if c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | '<' | '>' | '[' | ']') {
            in_url = false;
        }
        if !in_url && c == '/' && out.ends_with(':') && chars.peek() == Some(&'/') {
            in_url = true;
        }
        if in_url && (c == '?' || c == '#') {
            // Skip the query or fragment, up to the end of the word.
            while chars.peek().is_some_and(|n| !n.is_whitespace() && !matches!(n, ')' | '"' | '\'' | '<' | '>' | ']')) {
                chars.next();
            }
            out.push_str("?…");
            in_url = false;
            continue;
        }
        if c.is_control() && c != '\n' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    let redacted = redact(&out);
    let mut capped: String = redacted.chars().take(max_chars).collect();
    if redacted.chars().count() > max_chars {
        capped.push('…');
    }
    capped
}

/// Redacts API keys (`nbk_…`), bearer tokens and long token-like runs.
fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let mut after_bearer = false;
    let flush = |word: &mut String, out: &mut String, after_bearer: &mut bool| {
        if word.is_empty() {
            return;
        }
        let secret = *after_bearer || word.contains("nbk_") || word.chars().filter(|c| c.is_ascii_alphanumeric()).count() >= SECRET_RUN;
        *after_bearer = word.eq_ignore_ascii_case("bearer");
        if secret {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in s.chars() {
        if token_char(c) && c != '/' && c != '.' {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut after_bearer);
            if !c.is_whitespace() {
                after_bearer = false;
            }
            out.push(c);
        }
    }
    flush(&mut word, &mut out, &mut after_bearer);
    out
}

/// The path of a page URL: no origin, query or fragment.
pub fn page_path(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r.find('/').map_or("/", |i| r.get(i..).unwrap_or("/"))).unwrap_or(url);
    let path = rest.split(['?', '#']).next().unwrap_or("/");
    scrub(path, MAX_URL_CHARS)
}

fn text(body: &Value, name: &str) -> AppResult<Option<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.trim().is_empty())),
        Some(_) => Err(AppError::validation(name, format!("'{name}' must be a string."))),
    }
}

/// Reads `{"message","url","stack"?,"request_id"?}` and keeps what is safe to log.
pub fn parse(body: &Value) -> AppResult<ClientReport> {
    let message = text(body, "message")?.ok_or_else(|| AppError::validation("message", "'message' is required."))?;
    let url = text(body, "url")?.map(|u| page_path(&u)).unwrap_or_else(|| "/".into());
    let stack = text(body, "stack")?.map(|s| scrub(&s, MAX_STACK_CHARS));
    let request_id = text(body, "request_id")?.filter(|r| r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    Ok(ClientReport { message: scrub(&message, MAX_MESSAGE_CHARS), url, stack, request_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_lose_their_query_and_fragment() {
        assert_eq!(
            scrub("GET https://w.example/files/out/t/0.png?exp=1&sig=abc failed", 200),
            "GET https://w.example/files/out/t/0.png?… failed"
        );
        assert_eq!(scrub("at f (https://w.example/app.js?v=2:10:5)\nat g", 200), "at f (https://w.example/app.js?…)\nat g");
        assert_eq!(page_path("https://w.example/admin?token=x#frag"), "/admin");
        assert_eq!(page_path("/?q=1"), "/");
        assert_eq!(page_path("https://w.example"), "/");
        // A question mark in prose is not a URL.
        assert_eq!(scrub("why? because", 50), "why? because");
    }

    #[test]
    fn secrets_are_redacted() {
        let key = "nbk_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstu";
        assert_eq!(scrub(&format!("bad key {key} used"), 200), "bad key [redacted] used");
        assert_eq!(scrub("Authorization: Bearer admin-token-123 sent", 200), "Authorization: Bearer [redacted] sent");
        assert_eq!(scrub("token 9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc here", 200), "token [redacted] here");
        // Task ids and request ids stay: they are what an operator looks for.
        assert_eq!(
            scrub("task tsk_abcdefghijklmnopqrstuvwxyz failed (8c62826b600ba5f8-SJC)", 200),
            "task tsk_abcdefghijklmnopqrstuvwxyz failed (8c62826b600ba5f8-SJC)"
        );
    }

    #[test]
    fn reports_are_parsed_and_capped() {
        let r =
            parse(&json!({"message": "word ".repeat(200), "url": "https://w.example/?a=1", "stack": "s", "request_id": "ab-12"})).unwrap();
        assert_eq!(r.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(r.url, "/");
        assert_eq!(r.stack.as_deref(), Some("s"));
        assert_eq!(r.request_id.as_deref(), Some("ab-12"));
        let r = parse(&json!({"message": "m", "request_id": "<script>"})).unwrap();
        assert_eq!(r.request_id, None);
        assert_eq!(parse(&json!({"url": "/"})).unwrap_err().status(), 422);
        assert_eq!(parse(&json!({"message": 5})).unwrap_err().status(), 422);
        assert!(scrub("a\u{0}b\u{7}c", 10) == "a b c");
    }
}

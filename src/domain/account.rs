//! People's accounts: the name a new account gets from its ID token, the
//! per-IP bucket that limits new accounts, and self-service API keys (names,
//! the hint shown in lists, the public id a key is revoked by).

use super::error::{AppError, AppResult};
use super::jwt::Identity;
use super::signature::hmac_sha256;
use serde_json::Value;

/// Active keys a person may hold at once.
pub const MAX_ACTIVE_KEYS: i64 = 10;
pub const MAX_KEY_NAME_CHARS: usize = 60;

/// The account's display name: the token's `name`, else its email, else a
/// neutral word (at most 100 characters, like operator-created names).
pub fn display_name(id: &Identity) -> String {
    id.name.clone().or_else(|| id.email.clone()).map(|n| n.chars().take(100).collect()).unwrap_or_else(|| "New member".into())
}

/// The stored form of a client IP for the new-account limit: a keyed hash, so
/// the table holds no address and the IPv4 space cannot be tried against it.
pub fn ip_bucket_hash(secret: &str, ip: &str) -> String {
    let key = hmac_sha256(secret.as_bytes(), b"banana-worker signup ip key v1");
    hmac_sha256(&key, ip.trim().to_ascii_lowercase().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The start of the fixed window `now` falls in.
pub fn window_start(now_ms: i64, window_s: i64) -> i64 {
    let w = window_s.max(1) * 1000;
    now_ms.div_euclid(w) * w
}

/// A key's name from a request body: optional (default "API key"), trimmed,
/// 1 to 60 characters without control characters.
pub fn key_name(v: Option<&Value>) -> AppResult<String> {
    let raw = match v {
        None | Some(Value::Null) => return Ok("API key".into()),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(AppError::invalid_request("'name' must be a string.").with_details(serde_json::json!({ "field": "name" }))),
    };
    if raw.is_empty() || raw.chars().count() > MAX_KEY_NAME_CHARS || raw.chars().any(char::is_control) {
        return Err(AppError::validation("name", format!("A key's name is 1 to {MAX_KEY_NAME_CHARS} characters.")));
    }
    Ok(raw.to_string())
}

/// What lists show of a key: its first characters (`nbk_` and four more of
/// 52 random ones: nothing that helps guess it).
pub fn key_hint(key: &str) -> String {
    format!("{}…", key.chars().take(8).collect::<String>())
}

/// The id a key is listed and revoked by: the first 16 hex digits of its
/// stored hash (works for operator-issued keys too; reveals nothing of the key).
pub fn key_public_id(key_hash: &str) -> String {
    key_hash.chars().take(16).collect()
}

pub fn is_key_public_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signature::{api_key_hash, new_api_key};
    use serde_json::json;

    fn person(name: Option<&str>, email: Option<&str>) -> Identity {
        Identity { subject: "s".into(), email: email.map(String::from), email_verified: true, name: name.map(String::from) }
    }

    #[test]
    fn names_come_from_the_token() {
        assert_eq!(display_name(&person(Some("Ada Lovelace"), Some("ada@example.com"))), "Ada Lovelace");
        assert_eq!(display_name(&person(None, Some("ada@example.com"))), "ada@example.com");
        assert_eq!(display_name(&person(None, None)), "New member");
        assert_eq!(display_name(&person(Some(&"é".repeat(150)), None)).chars().count(), 100);
    }

    #[test]
    fn ip_buckets_are_keyed_and_windowed() {
        let a = ip_bucket_hash("secret-1", "203.0.113.9");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("203"));
        assert_eq!(a, ip_bucket_hash("secret-1", " 203.0.113.9 "));
        assert_ne!(a, ip_bucket_hash("secret-2", "203.0.113.9"), "another deployment's hashes do not match");
        assert_ne!(a, ip_bucket_hash("secret-1", "203.0.113.10"));
        assert_eq!(ip_bucket_hash("k", "2001:DB8::1"), ip_bucket_hash("k", "2001:db8::1"));
        assert_eq!(window_start(86_400_000 * 3 + 5, 86_400), 86_400_000 * 3);
        assert_eq!(window_start(1_500, 0), 1_000, "a zero window is one second");
    }

    #[test]
    fn key_names_hints_and_ids() {
        assert_eq!(key_name(None).unwrap(), "API key");
        assert_eq!(key_name(Some(&json!("  laptop script "))).unwrap(), "laptop script");
        assert_eq!(key_name(Some(&json!(""))).unwrap_err().status(), 422);
        assert_eq!(key_name(Some(&json!("x".repeat(61)))).unwrap_err().status(), 422);
        assert_eq!(key_name(Some(&json!("a\nb"))).unwrap_err().status(), 422);
        assert_eq!(key_name(Some(&json!(5))).unwrap_err().status(), 400);
        let key = new_api_key(&[3u8; 32]);
        assert_eq!(key_hint(&key), format!("{}…", &key[..8]));
        let id = key_public_id(&api_key_hash(&key));
        assert!(is_key_public_id(&id));
        assert!(!is_key_public_id("tsk_x") && !is_key_public_id(&"A".repeat(16)));
    }
}

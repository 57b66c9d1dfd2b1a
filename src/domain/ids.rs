//! Identifiers that can only hold a valid value: parsed once where they enter
//! (a path, a header, a D1 row, a Kie answer) and trusted everywhere after.

use super::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Our opaque ids: `<prefix>_` + 26 lowercase base32 characters (16 random bytes).
fn is_opaque_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// `None` unless `s` is exactly such an id.
            pub fn parse(s: &str) -> Option<$name> {
                is_opaque_id(s, $prefix).then(|| $name(s.to_string()))
            }
            /// A new id from 16 random bytes.
            pub fn new(random: &[u8; 16]) -> $name {
                $name(format!("{}_{}", $prefix, super::signature::base32(random)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $name::parse(&s).ok_or_else(|| format!("not a {} id", $prefix))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// A task of ours (`tsk_…`).
    TaskId,
    "tsk"
);
opaque_id!(
    /// A user (`usr_…`).
    UserId,
    "usr"
);

/// Kie's id for a task (32 hex characters in practice; we accept any short
/// token of safe characters, since the docs disagree on the format).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderTaskId(String);

impl ProviderTaskId {
    pub fn parse(s: &str) -> Option<ProviderTaskId> {
        let s = s.trim();
        let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        ok.then(|| ProviderTaskId(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProviderTaskId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ProviderTaskId::parse(&s).ok_or_else(|| "not a Kie task id".into())
    }
}

impl From<ProviderTaskId> for String {
    fn from(id: ProviderTaskId) -> String {
        id.0
    }
}

impl fmt::Display for ProviderTaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's `Idempotency-Key`: 1 to 128 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> AppResult<IdempotencyKey> {
        if (1..=128).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            Ok(IdempotencyKey(s.to_string()))
        } else {
            Err(AppError::invalid_request("Idempotency-Key must be 1 to 128 printable characters without spaces.")
                .with_details(serde_json::json!({ "field": "Idempotency-Key" })))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a `cf-ray` value is one Cloudflare makes: 16 hex digits, optionally
/// followed by `-` and a data-centre code of 3 letters (`8c62826b600ba5f8-SJC`).
/// Anything else is a client's invention and never becomes our request id.
pub fn is_ray_id(s: &str) -> bool {
    let (ray, colo) = s.split_once('-').map_or((s, None), |(r, c)| (r, Some(c)));
    let ray_ok = ray.len() == 16 && ray.bytes().all(|b| b.is_ascii_hexdigit());
    let colo_ok = colo.is_none_or(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    ray_ok && colo_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_their_own_shape() {
        let t = TaskId::new(&[3u8; 16]);
        assert!(t.as_str().starts_with("tsk_"));
        assert_eq!(TaskId::parse(t.as_str()), Some(t.clone()));
        assert_eq!(UserId::parse(t.as_str()), None, "a task id is not a user id");
        for bad in
            ["", "tsk_", "tsk_abc", "tsk_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "tsk_aaaaaaaaaaaaaaaaaaaaaaaaa1", "xtsk_aaaaaaaaaaaaaaaaaaaaaaaaaa"]
        {
            assert_eq!(TaskId::parse(bad), None, "{bad}");
        }
        assert!(TaskId::parse("tsk_aaaaaaaaaaaaaaaaaaaaaaaaa7").is_some());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), t);
        assert!(serde_json::from_str::<TaskId>("\"usr_aaaaaaaaaaaaaaaaaaaaaaaaaa\"").is_err());
    }

    #[test]
    fn only_well_formed_ray_ids_are_taken() {
        assert!(is_ray_id("8c62826b600ba5f8-SJC"));
        assert!(is_ray_id("8c62826b600ba5f8"));
        for bad in
            ["", "<script>alert(1)</script>", "8c62826b600ba5f8-sjc", "8c62826b600ba5f8-SJCX", "8c62826b600ba5g8", "x".repeat(64).as_str()]
        {
            assert!(!is_ray_id(bad), "{bad}");
        }
    }

    #[test]
    fn provider_ids_and_idempotency_keys() {
        assert_eq!(ProviderTaskId::parse(" b31f0a77d507765367dc8f5868ba3ceb ").unwrap().as_str(), "b31f0a77d507765367dc8f5868ba3ceb");
        assert!(ProviderTaskId::parse("a/b").is_none());
        assert!(ProviderTaskId::parse("").is_none());
        assert!(IdempotencyKey::parse("order-17:retry").is_ok());
        assert_eq!(IdempotencyKey::parse("has space").unwrap_err().status(), 400);
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }
}

//! Signatures and secrets: Kie's webhook HMAC, our signed file URLs, API-key
//! hashing, and constant-time comparison.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Kie's callback signature: base64(HMAC-SHA256(key, taskId + "." + timestamp)).
pub fn kie_signature(key: &str, task_id: &str, timestamp: &str) -> String {
    STANDARD.encode(hmac_sha256(key.as_bytes(), format!("{task_id}.{timestamp}").as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAuthError {
    MissingHeaders,
    MissingTaskId,
    BadTimestamp,
    StaleTimestamp,
    BadSignature,
}

impl WebhookAuthError {
    pub fn reason(self) -> &'static str {
        match self {
            WebhookAuthError::MissingHeaders => "missing X-Webhook-Timestamp or X-Webhook-Signature",
            WebhookAuthError::MissingTaskId => "no taskId in the callback body",
            WebhookAuthError::BadTimestamp => "X-Webhook-Timestamp is not a number",
            WebhookAuthError::StaleTimestamp => "X-Webhook-Timestamp is outside the allowed window",
            WebhookAuthError::BadSignature => "X-Webhook-Signature does not match",
        }
    }
}

/// Verifies Kie's HMAC headers against the task id taken from the body.
pub fn verify_kie_webhook(
    key: &str,
    task_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    now_s: i64,
    window_s: i64,
) -> Result<(), WebhookAuthError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(WebhookAuthError::MissingHeaders);
    };
    let task_id = task_id.ok_or(WebhookAuthError::MissingTaskId)?;
    let ts_num: i64 = ts.trim().parse().map_err(|_| WebhookAuthError::BadTimestamp)?;
    if (now_s - ts_num).abs() > window_s {
        return Err(WebhookAuthError::StaleTimestamp);
    }
    let expected = kie_signature(key, task_id, ts);
    if ct_eq(expected.as_bytes(), sig.trim().as_bytes()) {
        Ok(())
    } else {
        Err(WebhookAuthError::BadSignature)
    }
}

/// A `/files/` URL for `key` on `origin`, valid until a whole day past
/// `now + ttl` (stable within a day, so browsers can cache it).
pub fn signed_file_url(origin: &str, secret: &str, key: &str, ttl_s: i64, now_ms: i64) -> String {
    let exp = ((now_ms / 1000 + ttl_s) / 86_400 + 1) * 86_400;
    format!("{origin}/files/{key}?exp={exp}&sig={}", file_signature(secret, key, exp))
}

/// The health probe's answer to diagnose's nonce: proves that the deployment
/// behind a URL holds our secret. Keyed by a key derived from the file-URL
/// secret, so a probe answer can never double as a file signature.
pub fn probe_signature(file_url_secret: &str, nonce: &str) -> String {
    let probe_key = hmac_sha256(file_url_secret.as_bytes(), b"banana-worker health probe key v1");
    URL_SAFE_NO_PAD.encode(hmac_sha256(&probe_key, format!("probe:{nonce}").as_bytes()))
}

/// Signature for `/files/<key>?exp=<unix s>&sig=<sig>`.
pub fn file_signature(secret: &str, key: &str, exp_s: i64) -> String {
    URL_SAFE_NO_PAD.encode(&hmac_sha256(secret.as_bytes(), format!("file:{key}:{exp_s}").as_bytes())[..20])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccessError {
    Unsigned,
    Expired,
    BadSignature,
}

pub fn verify_file_signature(secret: &str, key: &str, exp: Option<&str>, sig: Option<&str>, now_s: i64) -> Result<(), FileAccessError> {
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return Err(FileAccessError::Unsigned);
    };
    let exp_s: i64 = exp.parse().map_err(|_| FileAccessError::BadSignature)?;
    if !ct_eq(file_signature(secret, key, exp_s).as_bytes(), sig.as_bytes()) {
        return Err(FileAccessError::BadSignature);
    }
    if exp_s < now_s {
        return Err(FileAccessError::Expired);
    }
    Ok(())
}

/// Lowercase base32 (RFC 4648 alphabet), no padding: ids and tokens.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let symbol = |v: u32| char::from(ALPHABET.get(v as usize).copied().unwrap_or(b'a'));
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol((buffer >> bits) & 31));
        }
    }
    if bits > 0 {
        out.push(symbol((buffer << (5 - bits)) & 31));
    }
    out
}

/// A new user API key `nbk_…` from 32 random bytes.
pub fn new_api_key(random: &[u8; 32]) -> String {
    format!("nbk_{}", base32(random))
}

/// What we store for an API key: it is high-entropy, so a plain SHA-256 is enough.
pub fn api_key_hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kie_signature_matches_the_documented_test_vector() {
        assert_eq!(
            kie_signature("test-webhook-hmac-key", "b31f0a77d507765367dc8f5868ba3ceb", "1769670760"),
            "U6g7KIxUE8sH3FB3oyeHwIqop1qL+NM/XVa03KVbXCc="
        );
    }

    #[test]
    fn webhook_verification_checks_everything() {
        let key = "k";
        let sig = kie_signature(key, "t1", "1000");
        assert_eq!(verify_kie_webhook(key, Some("t1"), Some("1000"), Some(&sig), 1100, 300), Ok(()));
        assert_eq!(verify_kie_webhook(key, Some("t2"), Some("1000"), Some(&sig), 1100, 300), Err(WebhookAuthError::BadSignature));
        assert_eq!(verify_kie_webhook(key, Some("t1"), Some("1000"), Some(&sig), 1400, 300), Err(WebhookAuthError::StaleTimestamp));
        assert_eq!(verify_kie_webhook(key, Some("t1"), None, Some(&sig), 1000, 300), Err(WebhookAuthError::MissingHeaders));
        assert_eq!(verify_kie_webhook(key, Some("t1"), Some("soon"), Some(&sig), 1000, 300), Err(WebhookAuthError::BadTimestamp));
        assert_eq!(verify_kie_webhook(key, None, Some("1000"), Some(&sig), 1000, 300), Err(WebhookAuthError::MissingTaskId));
    }

    #[test]
    fn file_signatures_bind_key_and_expiry() {
        let s = file_signature("secret", "in/a.png", 2000);
        assert_eq!(verify_file_signature("secret", "in/a.png", Some("2000"), Some(&s), 1000), Ok(()));
        assert_eq!(verify_file_signature("secret", "in/b.png", Some("2000"), Some(&s), 1000), Err(FileAccessError::BadSignature));
        assert_eq!(verify_file_signature("secret", "in/a.png", Some("2001"), Some(&s), 1000), Err(FileAccessError::BadSignature));
        assert_eq!(verify_file_signature("other", "in/a.png", Some("2000"), Some(&s), 1000), Err(FileAccessError::BadSignature));
        assert_eq!(verify_file_signature("secret", "in/a.png", Some("2000"), Some(&s), 3000), Err(FileAccessError::Expired));
        assert_eq!(verify_file_signature("secret", "in/a.png", None, None, 0), Err(FileAccessError::Unsigned));
    }

    #[test]
    fn keys_are_opaque_and_hashed() {
        let k = new_api_key(&[7u8; 32]);
        assert!(k.starts_with("nbk_") && k.len() == 4 + 52);
        assert_eq!(api_key_hash(&k).len(), 64);
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn signed_urls_verify_and_probe_signatures_are_not_file_signatures() {
        let url = signed_file_url("https://w.example", "secret", "out/t/0.png", 3600, 86_400_000);
        let q = url.split_once('?').unwrap().1;
        let exp = q.split('&').find_map(|p| p.strip_prefix("exp=")).unwrap();
        let sig = q.split('&').find_map(|p| p.strip_prefix("sig=")).unwrap();
        assert_eq!(exp, (2 * 86_400).to_string());
        assert_eq!(verify_file_signature("secret", "out/t/0.png", Some(exp), Some(sig), 86_400), Ok(()));
        // The probe answer for nonce n is not the file signature of key "probe:n".
        assert_ne!(probe_signature("secret", "n"), file_signature("secret", "probe:n", 0));
        assert_eq!(probe_signature("secret", "n"), probe_signature("secret", "n"));
        assert_ne!(probe_signature("secret", "n"), probe_signature("other", "n"));
    }

    #[test]
    fn ct_eq_compares_contents() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

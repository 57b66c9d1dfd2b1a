//! Browser sessions and the cookies around signing in: names and attributes,
//! reading a `Cookie` header, ids and their stored hashes, the sliding expiry,
//! and the same-origin rule for cookie-authenticated requests that change state.

use super::signature::{base32, sha256_hex};

/// A session lasts this long after its last refresh.
pub const SESSION_TTL_MS: i64 = 30 * 86_400_000;
/// A sign-in started at `/auth/login` must come back within this.
pub const LOGIN_TTL_MS: i64 = 10 * 60_000;
/// A new person has this long to pass the human check (Turnstile).
pub const SIGNUP_TTL_MS: i64 = 15 * 60_000;

/// The cookies this service sets; all `HttpOnly; SameSite=Lax; Path=/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieKind {
    /// The session id.
    Session,
    /// The pre-auth cookie binding a sign-in (state, nonce, PKCE verifier) to this browser.
    Login,
    /// A verified new person waiting for the human check.
    Signup,
}

impl CookieKind {
    /// `__Host-` names on https (no Domain, Path=/, Secure: a sibling subdomain
    /// cannot set or shadow them); plain names on http for local development.
    pub fn name(self, secure: bool) -> &'static str {
        match (self, secure) {
            (CookieKind::Session, true) => "__Host-nb_session",
            (CookieKind::Session, false) => "nb_session",
            (CookieKind::Login, true) => "__Host-nb_login",
            (CookieKind::Login, false) => "nb_login",
            (CookieKind::Signup, true) => "__Host-nb_signup",
            (CookieKind::Signup, false) => "nb_signup",
        }
    }

    pub fn max_age_s(self) -> i64 {
        match self {
            CookieKind::Session => SESSION_TTL_MS / 1000,
            CookieKind::Login => LOGIN_TTL_MS / 1000,
            CookieKind::Signup => SIGNUP_TTL_MS / 1000,
        }
    }
}

/// Whether cookies for this public origin are `Secure` with `__Host-` names.
pub fn secure_origin(origin: &str) -> bool {
    origin.starts_with("https://")
}

/// A `Set-Cookie` value.
pub fn set_cookie(kind: CookieKind, value: &str, secure: bool) -> String {
    cookie_line(kind.name(secure), value, kind.max_age_s(), secure)
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(kind: CookieKind, secure: bool) -> String {
    cookie_line(kind.name(secure), "", 0, secure)
}

fn cookie_line(name: &str, value: &str, max_age_s: i64, secure: bool) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}", if secure { "; Secure" } else { "" })
}

/// The value of cookie `name` in a `Cookie` header, if it has the shape of
/// one of our tokens (base32 or base64url, 16 to 128 characters).
pub fn read_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| (16..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// A new session id: 32 random bytes in base32 (52 characters).
pub fn new_session_id(random: &[u8; 32]) -> String {
    base32(random)
}

/// What D1 keeps for a cookie token: its SHA-256 (the token is 256 random
/// bits, so a plain hash cannot be reversed; a database leak yields no session).
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Whether a session used now should have its expiry pushed out: at most once
/// per `every_ms`, so a busy page costs one D1 write a day, not one per request.
pub fn needs_refresh(refreshed_at: i64, now: i64, every_ms: i64) -> bool {
    now - refreshed_at >= every_ms
}

pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Why a cookie-authenticated request must be refused as cross-origin, if it
/// must: a method that changes state, with an `Origin` that is not ours, or
/// without `Origin` but with a `Sec-Fetch-Site` other than `same-origin` or
/// `none`. A request with neither header (not a browser, or a very old one)
/// passes: `SameSite=Lax` keeps the cookie off cross-site subrequests anyway.
pub fn cross_origin_refusal(method: &str, origin: Option<&str>, sec_fetch_site: Option<&str>, ours: &[&str]) -> Option<&'static str> {
    if is_safe_method(method) {
        return None;
    }
    match (origin.map(str::trim), sec_fetch_site.map(str::trim)) {
        (Some(o), _) if ours.iter().any(|ours| ours.eq_ignore_ascii_case(o)) => None,
        (Some(_), _) => Some("Origin is not this site"),
        (None, Some(site)) if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") => None,
        (None, Some(_)) => Some("Sec-Fetch-Site is not same-origin"),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_the_contract_attributes() {
        let c = set_cookie(CookieKind::Session, "abc", true);
        assert_eq!(c, "__Host-nb_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000; Secure");
        assert_eq!(set_cookie(CookieKind::Session, "abc", false), "nb_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000");
        assert_eq!(set_cookie(CookieKind::Login, "x", true), "__Host-nb_login=x; Path=/; HttpOnly; SameSite=Lax; Max-Age=600; Secure");
        assert_eq!(clear_cookie(CookieKind::Signup, false), "nb_signup=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
        assert!(secure_origin("https://w.example") && !secure_origin("http://127.0.0.1:8787"));
    }

    #[test]
    fn cookie_headers_are_read_strictly() {
        let id = new_session_id(&[5u8; 32]);
        assert_eq!(id.len(), 52);
        let header = format!("theme=dark; nb_session={id}; other=1");
        assert_eq!(read_cookie(&header, "nb_session"), Some(id.as_str()));
        assert_eq!(read_cookie(&header, "__Host-nb_session"), None);
        assert_eq!(read_cookie("nb_session=short", "nb_session"), None);
        assert_eq!(read_cookie("nb_session=abcdefghijklmnop\"x", "nb_session"), None);
        assert_eq!(read_cookie("xnb_session=abcdefghijklmnopqrstuvwxyz", "nb_session"), None);
        assert_eq!(read_cookie("", "nb_session"), None);
        assert_eq!(token_hash(&id).len(), 64);
        assert_ne!(token_hash(&id), token_hash(&new_session_id(&[6u8; 32])));
    }

    #[test]
    fn sessions_slide_at_most_once_per_interval() {
        assert!(!needs_refresh(1_000, 1_000 + 86_399_999, 86_400_000));
        assert!(needs_refresh(1_000, 1_000 + 86_400_000, 86_400_000));
    }

    #[test]
    fn the_same_origin_rule() {
        let ours = ["https://w.example", "https://w.workers.dev"];
        let refuse = |m, o, s| cross_origin_refusal(m, o, s, &ours);
        assert_eq!(refuse("POST", Some("https://w.example"), Some("same-origin")), None);
        assert_eq!(refuse("DELETE", Some("https://w.workers.dev"), None), None);
        assert!(refuse("POST", Some("https://evil.example"), Some("same-origin")).is_some(), "Origin decides when present");
        assert!(refuse("POST", Some("null"), None).is_some());
        assert!(refuse("POST", Some("https://w.example.evil"), None).is_some());
        assert!(refuse("POST", None, Some("cross-site")).is_some());
        assert!(refuse("POST", None, Some("same-site")).is_some(), "a sibling subdomain is not us");
        assert_eq!(refuse("POST", None, Some("same-origin")), None);
        assert_eq!(refuse("POST", None, None), None);
        assert_eq!(refuse("GET", Some("https://evil.example"), Some("cross-site")), None, "reads change nothing");
        assert_eq!(refuse("HEAD", None, Some("cross-site")), None);
    }
}

//! ID tokens (JWTs in JWS compact form) as OpenID Connect uses them: taking a
//! token apart, choosing the provider's key by `kid` and `alg`, and checking
//! the claims. The signature itself is checked with WebCrypto by the adapter
//! (`adapters::webcrypto`); this module prepares exactly what it needs.

use super::signature::ct_eq;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// Larger tokens are refused before any parsing (Google's are ~1 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew allowed on `exp`, `iat` and `nbf`.
pub const SKEW_S: i64 = 60;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url (the only form JWS allows).
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// The signature algorithms we accept: what Google and most providers use.
/// `none` and the HMAC family are never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256; the signature is raw `r || s` (64 bytes).
    Es256,
}

impl JwsAlg {
    pub fn parse(s: &str) -> Option<JwsAlg> {
        match s {
            "RS256" => Some(JwsAlg::Rs256),
            "ES256" => Some(JwsAlg::Es256),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::Rs256 => "RS256",
            JwsAlg::Es256 => "ES256",
        }
    }
}

/// Why an ID token was refused. `reason()` is for the log line (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    UnsupportedAlg(String),
    /// No key in the provider's JWKS has this `kid` (the JWKS may be stale).
    UnknownKey,
    /// The JWKS has no usable key for the algorithm (or several, and no `kid`).
    NoUsableKey,
    BadSignature,
    Issuer,
    Audience,
    AuthorizedParty,
    Expired,
    NotYetValid,
    IssuedInFuture,
    Nonce,
    Subject,
}

impl TokenError {
    pub fn reason(&self) -> String {
        match self {
            TokenError::Malformed(what) => format!("id_token malformed: {what}"),
            TokenError::UnsupportedAlg(alg) => format!("id_token alg {alg:?} not accepted"),
            TokenError::UnknownKey => "id_token kid not in the provider's JWKS".into(),
            TokenError::NoUsableKey => "no usable key in the provider's JWKS".into(),
            TokenError::BadSignature => "id_token signature invalid".into(),
            TokenError::Issuer => "id_token iss mismatch".into(),
            TokenError::Audience => "id_token aud does not contain our client_id".into(),
            TokenError::AuthorizedParty => "id_token azp is not our client_id".into(),
            TokenError::Expired => "id_token expired".into(),
            TokenError::NotYetValid => "id_token nbf in the future".into(),
            TokenError::IssuedInFuture => "id_token iat in the future".into(),
            TokenError::Nonce => "id_token nonce mismatch".into(),
            TokenError::Subject => "id_token sub missing or invalid".into(),
        }
    }
}

/// A compact JWS taken apart; nothing in it is trusted yet.
#[derive(Debug, Clone)]
pub struct CompactJws {
    pub alg: JwsAlg,
    pub kid: Option<String>,
    /// `base64url(header) "." base64url(payload)`: the bytes that were signed.
    pub signing_input: String,
    pub signature: Vec<u8>,
    pub claims: Map<String, Value>,
}

fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = b64url_decode(part).ok_or(TokenError::Malformed(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(what)),
    }
}

/// Splits `header.payload.signature`, decodes each part and reads the header.
pub fn parse_compact(token: &str) -> Result<CompactJws, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("not three parts"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(TokenError::Malformed("empty part"));
    }
    let header = json_object(h, "header")?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(TokenError::Malformed("header without alg"))?;
    let alg = JwsAlg::parse(alg_name).ok_or_else(|| TokenError::UnsupportedAlg(alg_name.chars().take(16).collect()))?;
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("critical header extensions"));
    }
    if let Some(typ) = header.get("typ") {
        if !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return Err(TokenError::Malformed("typ is not JWT"));
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed("kid")),
    };
    let claims = json_object(p, "payload")?;
    let signature = b64url_decode(s).ok_or(TokenError::Malformed("signature encoding"))?;
    if alg == JwsAlg::Es256 && signature.len() != 64 {
        return Err(TokenError::BadSignature);
    }
    Ok(CompactJws { alg, kid, signing_input: format!("{h}.{p}"), signature, claims })
}

/// What the JWKS offers for a token.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyChoice {
    /// The key, reduced to what WebCrypto's `importKey('jwk', …)` needs.
    Found(Value),
    UnknownKid,
    NoUsableKey,
}

fn b64_field<'a>(key: &'a Map<String, Value>, name: &str, len: Option<usize>) -> Option<&'a str> {
    let v = key.get(name)?.as_str()?;
    let bytes = b64url_decode(v)?;
    (len.is_none_or(|l| bytes.len() == l) && !bytes.is_empty()).then_some(v)
}

/// The key in its minimal public form if it can verify `alg` at all.
fn usable_key(key: &Map<String, Value>, alg: JwsAlg) -> Option<Value> {
    let s = |name: &str| key.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") || s("alg").is_some_and(|a| a != alg.as_str()) {
        return None;
    }
    if let Some(ops) = key.get("key_ops") {
        if !ops.as_array().is_some_and(|ops| ops.iter().any(|o| o == "verify")) {
            return None;
        }
    }
    match (alg, s("kty")) {
        (JwsAlg::Rs256, Some("RSA")) => {
            let (n, e) = (b64_field(key, "n", None)?, b64_field(key, "e", None)?);
            // Fewer than 2048 bits is not a key to trust.
            (b64url_decode(n)?.len() >= 256).then(|| json!({ "kty": "RSA", "n": n, "e": e }))
        }
        (JwsAlg::Es256, Some("EC")) if s("crv") == Some("P-256") => {
            let (x, y) = (b64_field(key, "x", Some(32))?, b64_field(key, "y", Some(32))?);
            Some(json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }))
        }
        _ => None,
    }
}

/// Picks the key for a token from a JWKS document (`{"keys": [...]}`): by
/// `kid` when the token names one, else the only key usable for `alg`.
pub fn select_key(jwks: &Value, alg: JwsAlg, kid: Option<&str>) -> KeyChoice {
    let keys: Vec<&Map<String, Value>> =
        jwks.get("keys").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_object).collect()).unwrap_or_default();
    match kid {
        Some(kid) => {
            let named: Vec<_> = keys.iter().filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid)).collect();
            if named.is_empty() {
                return KeyChoice::UnknownKid;
            }
            named.iter().find_map(|k| usable_key(k, alg)).map(KeyChoice::Found).unwrap_or(KeyChoice::NoUsableKey)
        }
        None => {
            let usable: Vec<Value> = keys.iter().filter_map(|k| usable_key(k, alg)).collect();
            match usable.as_slice() {
                [only] => KeyChoice::Found(only.clone()),
                _ => KeyChoice::NoUsableKey,
            }
        }
    }
}

/// How many keys of a JWKS could verify RS256 or ES256 tokens (diagnose).
pub fn count_usable_keys(jwks: &Value) -> usize {
    let keys = jwks.get("keys").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_object).collect::<Vec<_>>());
    keys.unwrap_or_default().iter().filter(|k| usable_key(k, JwsAlg::Rs256).is_some() || usable_key(k, JwsAlg::Es256).is_some()).count()
}

/// What a valid ID token must say.
pub struct Expected<'a> {
    /// Accepted `iss` values: the discovered issuer (and Google's historical alias).
    pub issuers: &'a [&'a str],
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now_s: i64,
}

/// The person an ID token names, once it checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().filter(|f| f.is_finite()).map(|f| Some(f as i64)).ok_or(TokenError::Malformed("time claim is not a number")),
    }
}

fn short_text(claims: &Map<String, Value>, name: &str, max: usize) -> Option<String> {
    let v = claims.get(name)?.as_str()?.trim();
    (!v.is_empty() && !v.chars().any(char::is_control)).then(|| v.chars().take(max).collect())
}

/// OpenID Connect Core §3.1.3.7: issuer, audience (and `azp` when there are
/// several audiences or it is present), expiry, issue time, not-before, and
/// the nonce of this browser's sign-in.
pub fn validate_claims(claims: &Map<String, Value>, expected: &Expected) -> Result<Identity, TokenError> {
    let iss = claims.get("iss").and_then(Value::as_str).ok_or(TokenError::Issuer)?;
    if !expected.issuers.contains(&iss) {
        return Err(TokenError::Issuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Audience),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(TokenError::Audience);
    }
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(expected.client_id) => return Err(TokenError::AuthorizedParty),
        None if audiences.len() > 1 => return Err(TokenError::AuthorizedParty),
        _ => {}
    }
    let now = expected.now_s;
    let exp = number(claims, "exp")?.ok_or(TokenError::Malformed("no exp"))?;
    if now >= exp + SKEW_S {
        return Err(TokenError::Expired);
    }
    let iat = number(claims, "iat")?.ok_or(TokenError::Malformed("no iat"))?;
    if iat > now + SKEW_S {
        return Err(TokenError::IssuedInFuture);
    }
    if number(claims, "nbf")?.is_some_and(|nbf| nbf > now + SKEW_S) {
        return Err(TokenError::NotYetValid);
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).ok_or(TokenError::Nonce)?;
    if !ct_eq(nonce.as_bytes(), expected.nonce.as_bytes()) {
        return Err(TokenError::Nonce);
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(TokenError::Subject);
    }
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    Ok(Identity {
        subject: subject.to_string(),
        email: short_text(claims, "email", 254),
        email_verified,
        name: short_text(claims, "name", 100),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: Value, payload: Value, sig: &[u8]) -> String {
        format!("{}.{}.{}", b64url(header.to_string().as_bytes()), b64url(payload.to_string().as_bytes()), b64url(sig))
    }

    #[test]
    fn a_real_google_shaped_token_comes_apart() {
        let t = token(
            json!({"alg": "RS256", "kid": "a1b2", "typ": "JWT"}),
            json!({"iss": "https://accounts.google.com", "sub": "1109"}),
            &[7u8; 256],
        );
        let jws = parse_compact(&t).unwrap();
        assert_eq!(jws.alg, JwsAlg::Rs256);
        assert_eq!(jws.kid.as_deref(), Some("a1b2"));
        assert_eq!(jws.signature.len(), 256);
        assert_eq!(jws.claims["sub"], "1109");
        let (h, p) = jws.signing_input.split_once('.').unwrap();
        assert!(t.starts_with(&format!("{h}.{p}.")));
    }

    #[test]
    fn malformed_and_dangerous_tokens_are_refused() {
        let ok_payload = json!({"sub": "x"});
        let none = token(json!({"alg": "none"}), ok_payload.clone(), b"x");
        assert_eq!(parse_compact(&none).unwrap_err(), TokenError::UnsupportedAlg("none".into()));
        let hs = token(json!({"alg": "HS256"}), ok_payload.clone(), b"x");
        assert!(matches!(parse_compact(&hs), Err(TokenError::UnsupportedAlg(_))));
        let crit = token(json!({"alg": "RS256", "crit": ["exp"]}), ok_payload.clone(), b"x");
        assert!(matches!(parse_compact(&crit), Err(TokenError::Malformed(_))));
        let typ = token(json!({"alg": "RS256", "typ": "at+jwt"}), ok_payload.clone(), b"x");
        assert!(matches!(parse_compact(&typ), Err(TokenError::Malformed(_))));
        let es_short = token(json!({"alg": "ES256"}), ok_payload.clone(), &[1u8; 70]);
        assert_eq!(parse_compact(&es_short).unwrap_err(), TokenError::BadSignature);
        for bad in ["", "a.b", "a.b.c.d", "..", "e30.e30.", "!!.e30.AA", "e30.W10.AA"] {
            assert!(parse_compact(bad).is_err(), "{bad}");
        }
        // Padding is not base64url as JWS uses it.
        let padded = format!("{}=.e30.AA", b64url(br#"{"alg":"RS256"}"#));
        assert!(parse_compact(&padded).is_err());
        assert!(parse_compact(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    fn rsa_key(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(&[0xc3; 256]), "e": "AQAB"})
    }
    fn ec_key(kid: &str) -> Value {
        json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": b64url(&[1; 32]), "y": b64url(&[2; 32]), "use": "sig"})
    }

    #[test]
    fn keys_are_chosen_by_kid_and_alg() {
        let jwks = json!({"keys": [rsa_key("r1"), ec_key("e1"), rsa_key("r2")]});
        match select_key(&jwks, JwsAlg::Rs256, Some("r2")) {
            KeyChoice::Found(k) => assert_eq!(k, json!({"kty": "RSA", "n": b64url(&[0xc3; 256]), "e": "AQAB"})),
            other => panic!("{other:?}"),
        }
        match select_key(&jwks, JwsAlg::Es256, Some("e1")) {
            KeyChoice::Found(k) => assert_eq!(k["crv"], "P-256"),
            other => panic!("{other:?}"),
        }
        assert_eq!(select_key(&jwks, JwsAlg::Rs256, Some("rotated")), KeyChoice::UnknownKid);
        // The kid exists but for another algorithm: no key confusion.
        assert_eq!(select_key(&jwks, JwsAlg::Es256, Some("r1")), KeyChoice::NoUsableKey);
        // Without kid: only an unambiguous key.
        assert!(matches!(select_key(&jwks, JwsAlg::Es256, None), KeyChoice::Found(_)));
        assert_eq!(select_key(&jwks, JwsAlg::Rs256, None), KeyChoice::NoUsableKey);
        // Encryption keys, other algs, short RSA keys and bad EC points are not used.
        let odd = json!({"keys": [
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64url(&[1; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": b64url(&[1; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": b64url(&[1; 128]), "e": "AQAB"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": b64url(&[1; 48]), "y": b64url(&[2; 48])},
            {"kty": "EC", "kid": "short", "crv": "P-256", "x": b64url(&[1; 31]), "y": b64url(&[2; 32])},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": b64url(&[1; 256]), "e": "AQAB"}
        ]});
        for kid in ["enc", "ps", "small", "ops"] {
            assert_eq!(select_key(&odd, JwsAlg::Rs256, Some(kid)), KeyChoice::NoUsableKey, "{kid}");
        }
        for kid in ["p384", "short"] {
            assert_eq!(select_key(&odd, JwsAlg::Es256, Some(kid)), KeyChoice::NoUsableKey, "{kid}");
        }
        assert_eq!(select_key(&json!({}), JwsAlg::Rs256, Some("x")), KeyChoice::UnknownKid);
        assert_eq!(count_usable_keys(&jwks), 3);
        assert_eq!(count_usable_keys(&odd), 0);
    }

    const NOW: i64 = 1_800_000_000;

    fn claims() -> Map<String, Value> {
        json!({"iss": "https://accounts.google.com", "aud": "client-1.apps.googleusercontent.com", "sub": "110169484474386276334",
               "email": "ada@example.com", "email_verified": true, "name": "Ada Lovelace", "iat": NOW - 10, "exp": NOW + 3590,
               "nonce": "n-0S6_WzA2Mj"})
        .as_object()
        .unwrap()
        .clone()
    }

    fn check(c: &Map<String, Value>) -> Result<Identity, TokenError> {
        let issuers = ["https://accounts.google.com", "accounts.google.com"];
        validate_claims(
            c,
            &Expected { issuers: &issuers, client_id: "client-1.apps.googleusercontent.com", nonce: "n-0S6_WzA2Mj", now_s: NOW },
        )
    }

    fn with(name: &str, v: Value) -> Map<String, Value> {
        let mut c = claims();
        c.insert(name.into(), v);
        c
    }

    #[test]
    fn valid_claims_name_the_person() {
        let id = check(&claims()).unwrap();
        assert_eq!(id.subject, "110169484474386276334");
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
        assert!(id.email_verified);
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
        // Google's historical iss without scheme.
        assert!(check(&with("iss", json!("accounts.google.com"))).is_ok());
        // aud as an array with our id alone, or several with azp = us.
        assert!(check(&with("aud", json!(["client-1.apps.googleusercontent.com"]))).is_ok());
        let mut multi = with("aud", json!(["client-1.apps.googleusercontent.com", "other"]));
        assert_eq!(check(&multi).unwrap_err(), TokenError::AuthorizedParty);
        multi.insert("azp".into(), json!("client-1.apps.googleusercontent.com"));
        assert!(check(&multi).is_ok());
        // Inside the skew.
        assert!(check(&with("exp", json!(NOW - SKEW_S + 1))).is_ok());
        assert!(check(&with("iat", json!(NOW + SKEW_S))).is_ok());
        assert!(check(&with("nbf", json!(NOW + 5))).is_ok());
        assert!(check(&with("email_verified", json!("true"))).unwrap().email_verified);
    }

    #[test]
    fn each_wrong_claim_is_refused_for_its_reason() {
        assert_eq!(check(&with("iss", json!("https://evil.example"))).unwrap_err(), TokenError::Issuer);
        assert_eq!(check(&with("aud", json!("someone-else"))).unwrap_err(), TokenError::Audience);
        assert_eq!(check(&with("aud", json!(["a", "b"]))).unwrap_err(), TokenError::Audience);
        assert_eq!(check(&with("aud", json!(17))).unwrap_err(), TokenError::Audience);
        assert_eq!(check(&with("azp", json!("someone-else"))).unwrap_err(), TokenError::AuthorizedParty);
        assert_eq!(check(&with("exp", json!(NOW - SKEW_S))).unwrap_err(), TokenError::Expired);
        assert_eq!(check(&with("iat", json!(NOW + SKEW_S + 1))).unwrap_err(), TokenError::IssuedInFuture);
        assert_eq!(check(&with("nbf", json!(NOW + SKEW_S + 1))).unwrap_err(), TokenError::NotYetValid);
        assert_eq!(check(&with("nonce", json!("replayed"))).unwrap_err(), TokenError::Nonce);
        assert_eq!(check(&with("sub", json!(""))).unwrap_err(), TokenError::Subject);
        assert_eq!(check(&with("sub", json!("x".repeat(256)))).unwrap_err(), TokenError::Subject);
        assert!(matches!(check(&with("exp", json!("tomorrow"))), Err(TokenError::Malformed(_))));
        let mut c = claims();
        c.remove("nonce");
        assert_eq!(check(&c).unwrap_err(), TokenError::Nonce);
        let mut c = claims();
        c.remove("exp");
        assert!(matches!(check(&c), Err(TokenError::Malformed(_))));
        let mut c = claims();
        c.remove("iss");
        assert_eq!(check(&c).unwrap_err(), TokenError::Issuer);
        for e in [TokenError::Expired, TokenError::Nonce, TokenError::BadSignature] {
            assert!(e.reason().starts_with("id_token"));
        }
    }
}

//! The OpenID Connect authorization code flow with PKCE, as a relying party:
//! the provider's discovery document, the secrets of one sign-in (state,
//! nonce, PKCE verifier), the authorization URL, the token request and its
//! answer. No I/O: the adapter (`adapters::oidc`) does the fetching.

use super::jwt::b64url;
use super::query::encode_query;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What we ask the provider for: the subject, and an email and a name to show.
pub const SCOPE: &str = "openid email profile";
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// How we authenticate to the token endpoint with the client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` (RFC 6749 §2.3.1): the default when a provider does not say.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// The parts of a provider's discovery document we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub client_auth: ClientAuth,
}

/// `<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// An endpoint URL: https (or http outside production), with a host.
fn endpoint_ok(url: &str, require_https: bool) -> bool {
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => r,
        (None, Some(r)) if !require_https => r,
        _ => return false,
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !url.contains(char::is_whitespace) && !url.contains('#')
}

fn strings(doc: &Value, name: &str) -> Option<Vec<String>> {
    doc.get(name).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
}

/// Reads a discovery document. Its `issuer` must be the configured one (up to
/// a trailing slash; the document's spelling is then the one tokens carry),
/// the endpoints must be https in production, and the provider must offer
/// PKCE S256, an ID-token algorithm we verify, and a client authentication we speak.
pub fn parse_discovery(body: &[u8], configured_issuer: &str, require_https: bool) -> Result<Discovery, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "the discovery document is not JSON".to_string())?;
    let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_string);
    let issuer = field("issuer").ok_or("the discovery document has no issuer")?;
    if issuer.trim_end_matches('/') != configured_issuer.trim_end_matches('/') {
        return Err(format!("the discovery document names issuer {issuer:?}, not the configured OIDC_ISSUER"));
    }
    let endpoint = |name: &str| -> Result<String, String> {
        let url = field(name).ok_or_else(|| format!("the discovery document has no {name}"))?;
        if !endpoint_ok(&url, require_https) {
            return Err(format!("{name} must be an {} URL", if require_https { "https" } else { "http(s)" }));
        }
        Ok(url)
    };
    let authorization_endpoint = endpoint("authorization_endpoint")?;
    let token_endpoint = endpoint("token_endpoint")?;
    let jwks_uri = endpoint("jwks_uri")?;
    if let Some(methods) = strings(&doc, "code_challenge_methods_supported") {
        if !methods.iter().any(|m| m == "S256") {
            return Err("the provider does not offer PKCE with S256".into());
        }
    }
    if let Some(algs) = strings(&doc, "id_token_signing_alg_values_supported") {
        if !algs.iter().any(|a| a == "RS256" || a == "ES256") {
            return Err("the provider signs ID tokens with neither RS256 nor ES256".into());
        }
    }
    let client_auth = match strings(&doc, "token_endpoint_auth_methods_supported") {
        None => ClientAuth::Basic,
        Some(m) if m.iter().any(|m| m == "client_secret_basic") => ClientAuth::Basic,
        Some(m) if m.iter().any(|m| m == "client_secret_post") => ClientAuth::Post,
        Some(_) => return Err("the provider's token endpoint takes neither client_secret_basic nor client_secret_post".into()),
    };
    Ok(Discovery { issuer, authorization_endpoint, token_endpoint, jwks_uri, client_auth })
}

/// The `iss` values an ID token from this issuer may carry. Google's tokens
/// may say `accounts.google.com` without the scheme (Google's documentation).
pub fn accepted_issuers(issuer: &str) -> Vec<&str> {
    if issuer.trim_end_matches('/') == GOOGLE_ISSUER {
        vec![issuer, "accounts.google.com"]
    } else {
        vec![issuer]
    }
}

/// The secrets of one sign-in: the pre-auth cookie's value (its hash keys the
/// stored attempt), `state` (ties the provider's answer to this browser),
/// `nonce` (ties the ID token to this attempt) and the PKCE verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSecrets {
    pub login_id: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// Each secret is 32 random bytes, base64url (43 characters: a valid PKCE
/// verifier per RFC 7636 §4.1).
pub fn login_secrets(random: &[u8; 128]) -> LoginSecrets {
    let part = |i: usize| b64url(random.get(i * 32..(i + 1) * 32).unwrap_or_default());
    LoginSecrets { login_id: part(0), state: part(1), nonce: part(2), code_verifier: part(3) }
}

/// PKCE S256: `base64url(SHA-256(verifier))` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// Where the browser is sent to sign in.
pub fn authorization_url(d: &Discovery, client_id: &str, redirect_uri: &str, secrets: &LoginSecrets) -> String {
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPE),
        ("state", &secrets.state),
        ("nonce", &secrets.nonce),
        ("code_challenge", &pkce_challenge(&secrets.code_verifier)),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode_query(v)))
    .collect::<Vec<_>>()
    .join("&");
    let sep = if d.authorization_endpoint.contains('?') { '&' } else { '?' };
    format!("{}{sep}{params}", d.authorization_endpoint)
}

/// The token request: an optional `Authorization` header value and the form body.
pub fn token_request(
    auth: ClientAuth,
    client_id: &str,
    client_secret: &str,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> (Option<String>, String) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
        ("client_id", client_id),
    ];
    let header = match auth {
        ClientAuth::Basic => {
            Some(format!("Basic {}", STANDARD.encode(format!("{}:{}", encode_query(client_id), encode_query(client_secret)))))
        }
        ClientAuth::Post => {
            form.push(("client_secret", client_secret));
            None
        }
    };
    (header, form.iter().map(|(k, v)| format!("{k}={}", encode_query(v))).collect::<Vec<_>>().join("&"))
}

/// What the token endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    IdToken(String),
    /// The provider refused the code (used, expired, not ours, wrong verifier):
    /// its OAuth error code, for the log.
    Refused(String),
    /// Not an answer we can use (a server error, no ID token, not JSON).
    Unusable(String),
}

pub fn parse_token_answer(status: u16, body: &[u8]) -> TokenAnswer {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = doc.get("error").and_then(Value::as_str).map(|e| e.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>());
    match (status, error) {
        (200, None) => match doc.get("id_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => TokenAnswer::IdToken(t.to_string()),
            _ => TokenAnswer::Unusable("token answer without id_token".into()),
        },
        (400..=499, Some(e)) => TokenAnswer::Refused(e),
        (s, e) => TokenAnswer::Unusable(format!("token endpoint HTTP {s}{}", e.map(|e| format!(" ({e})")).unwrap_or_default())),
    }
}

/// The path to land on after signing in: a local path only (no scheme, no
/// `//host`, no backslash tricks), else `/`.
pub fn safe_return_path(p: Option<&str>) -> String {
    match p {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 512
                && p.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\') =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

/// A provider's `error` query parameter, safe to log.
pub fn provider_error(e: &str) -> String {
    e.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect()
}

/// `Sign in with <name>` on the page: Google for Google, else the issuer's host.
pub fn provider_name(issuer: &str) -> String {
    if issuer.trim_end_matches('/') == GOOGLE_ISSUER {
        return "Google".into();
    }
    let rest = issuer.split_once("://").map(|(_, r)| r).unwrap_or(issuer);
    rest.split('/').next().unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::query::parse_query;

    /// Google's discovery document, as published (abridged to the fields it has).
    const GOOGLE: &str = r#"{
 "issuer": "https://accounts.google.com",
 "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
 "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
 "token_endpoint": "https://oauth2.googleapis.com/token",
 "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
 "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
 "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
 "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
 "subject_types_supported": ["public"],
 "id_token_signing_alg_values_supported": ["RS256"],
 "scopes_supported": ["openid", "email", "profile"],
 "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
 "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
 "code_challenge_methods_supported": ["plain", "S256"],
 "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
}"#;

    #[test]
    fn google_discovery_is_understood() {
        let d = parse_discovery(GOOGLE.as_bytes(), "https://accounts.google.com", true).unwrap();
        assert_eq!(d.issuer, "https://accounts.google.com");
        assert_eq!(d.token_endpoint, "https://oauth2.googleapis.com/token");
        assert_eq!(d.jwks_uri, "https://www.googleapis.com/oauth2/v3/certs");
        assert_eq!(d.client_auth, ClientAuth::Basic);
        assert_eq!(discovery_url("https://accounts.google.com/"), "https://accounts.google.com/.well-known/openid-configuration");
        // A trailing slash in the setting is forgiven; tokens are checked against the document's spelling.
        assert!(parse_discovery(GOOGLE.as_bytes(), "https://accounts.google.com/", true).is_ok());
        assert_eq!(accepted_issuers(&d.issuer), vec!["https://accounts.google.com", "accounts.google.com"]);
        assert_eq!(accepted_issuers("http://127.0.0.1:9000"), vec!["http://127.0.0.1:9000"]);
        assert_eq!(provider_name(&d.issuer), "Google");
        assert_eq!(provider_name("https://login.example.com/tenant/v2.0"), "login.example.com");
    }

    #[test]
    fn discovery_documents_that_cannot_be_trusted_are_refused() {
        let doc = |edit: &dyn Fn(&mut Value)| {
            let mut v: Value = serde_json::from_str(GOOGLE).unwrap();
            edit(&mut v);
            v.to_string()
        };
        let other_issuer = doc(&|v| v["issuer"] = "https://evil.example".into());
        assert!(parse_discovery(other_issuer.as_bytes(), GOOGLE_ISSUER, true).unwrap_err().contains("issuer"));
        let http_token = doc(&|v| v["token_endpoint"] = "http://oauth2.googleapis.com/token".into());
        assert!(parse_discovery(http_token.as_bytes(), GOOGLE_ISSUER, true).unwrap_err().contains("token_endpoint"));
        assert!(parse_discovery(http_token.as_bytes(), GOOGLE_ISSUER, false).is_ok(), "http allowed outside production");
        let plain_only = doc(&|v| v["code_challenge_methods_supported"] = serde_json::json!(["plain"]));
        assert!(parse_discovery(plain_only.as_bytes(), GOOGLE_ISSUER, true).unwrap_err().contains("S256"));
        let hs_only = doc(&|v| v["id_token_signing_alg_values_supported"] = serde_json::json!(["HS256"]));
        assert!(parse_discovery(hs_only.as_bytes(), GOOGLE_ISSUER, true).is_err());
        let post_only = doc(&|v| v["token_endpoint_auth_methods_supported"] = serde_json::json!(["client_secret_post"]));
        assert_eq!(parse_discovery(post_only.as_bytes(), GOOGLE_ISSUER, true).unwrap().client_auth, ClientAuth::Post);
        let jwt_only = doc(&|v| v["token_endpoint_auth_methods_supported"] = serde_json::json!(["private_key_jwt"]));
        assert!(parse_discovery(jwt_only.as_bytes(), GOOGLE_ISSUER, true).is_err());
        let no_jwks = doc(&|v| {
            v.as_object_mut().unwrap().remove("jwks_uri");
        });
        assert!(parse_discovery(no_jwks.as_bytes(), GOOGLE_ISSUER, true).unwrap_err().contains("jwks_uri"));
        assert!(parse_discovery(b"<html>", GOOGLE_ISSUER, true).is_err());
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn login_secrets_are_independent_and_well_formed() {
        let mut random = [0u8; 128];
        for (i, b) in random.iter_mut().enumerate() {
            *b = i as u8;
        }
        let s = login_secrets(&random);
        let all = [&s.login_id, &s.state, &s.nonce, &s.code_verifier];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.len(), 43);
            assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn the_authorization_url_carries_the_flow() {
        let d = parse_discovery(GOOGLE.as_bytes(), GOOGLE_ISSUER, true).unwrap();
        let mut random = [0u8; 128];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let s = login_secrets(&random);
        let url = authorization_url(&d, "client 1", "https://w.example/auth/callback", &s);
        let (base, q) = url.split_once('?').unwrap();
        assert_eq!(base, "https://accounts.google.com/o/oauth2/v2/auth");
        let q = parse_query(q);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("client 1"));
        assert_eq!(get("redirect_uri"), Some("https://w.example/auth/callback"));
        assert_eq!(get("scope"), Some("openid email profile"));
        assert_eq!(get("state"), Some(s.state.as_str()));
        assert_eq!(get("nonce"), Some(s.nonce.as_str()));
        assert_eq!(get("code_challenge"), Some(pkce_challenge(&s.code_verifier).as_str()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert!(!url.contains(&s.code_verifier), "the verifier never leaves the server");
        let d2 = Discovery { authorization_endpoint: "https://p.example/auth?tenant=x".into(), ..d };
        assert!(authorization_url(&d2, "c", "r", &s).starts_with("https://p.example/auth?tenant=x&response_type=code&"));
    }

    #[test]
    fn token_requests_authenticate_as_the_provider_asks() {
        let (auth, body) = token_request(ClientAuth::Basic, "id:1", "s3cr+t", "c/d", "https://w/auth/callback", "v");
        // RFC 6749 §2.3.1: form-encode both, then base64 "id:secret".
        assert_eq!(auth.unwrap(), format!("Basic {}", STANDARD.encode("id%3A1:s3cr%2Bt")));
        assert_eq!(
            body,
            "grant_type=authorization_code&code=c%2Fd&redirect_uri=https%3A%2F%2Fw%2Fauth%2Fcallback&code_verifier=v&client_id=id%3A1"
        );
        let (auth, body) = token_request(ClientAuth::Post, "id", "sec", "c", "r", "v");
        assert!(auth.is_none());
        assert!(body.ends_with("&client_id=id&client_secret=sec"));
    }

    #[test]
    fn token_answers_are_classified() {
        assert_eq!(
            parse_token_answer(200, br#"{"access_token":"a","id_token":"x.y.z","token_type":"Bearer"}"#),
            TokenAnswer::IdToken("x.y.z".into())
        );
        assert_eq!(
            parse_token_answer(400, br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#),
            TokenAnswer::Refused("invalid_grant".into())
        );
        assert_eq!(parse_token_answer(401, br#"{"error":"invalid_client"}"#), TokenAnswer::Refused("invalid_client".into()));
        assert!(matches!(parse_token_answer(200, br#"{"access_token":"a"}"#), TokenAnswer::Unusable(_)));
        assert!(matches!(parse_token_answer(503, b"busy"), TokenAnswer::Unusable(_)));
        assert!(matches!(parse_token_answer(400, b"<html>"), TokenAnswer::Unusable(_)));
    }

    #[test]
    fn return_paths_stay_on_this_site() {
        assert_eq!(safe_return_path(Some("/?tab=history")), "/?tab=history");
        for bad in ["//evil.example", "/\\evil.example", "https://evil.example", "evil", "/a b", "/\u{7f}", ""] {
            assert_eq!(safe_return_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_path(None), "/");
        assert_eq!(provider_error("access_denied<script>"), "access_deniedscript");
    }
}

//! The OpenID provider, as seen from the Worker: its discovery document and
//! signing keys (cached in the isolate and in KV for an hour; the keys are
//! fetched again when a token names a `kid` we do not know), the token
//! request, and the ID token check (WebCrypto for the signature, the domain
//! for everything else). Every call is one `oidc.call` log line; no token,
//! code or secret is ever logged.

use super::cache::Cache;
use super::clock::now_ms;
use super::log::Log;
use super::outbound;
use super::webcrypto;
use crate::domain::config::OidcSettings;
use crate::domain::error::{AppError, ErrorCode};
use crate::domain::jwt::{parse_compact, select_key, validate_claims, Expected, Identity, KeyChoice, TokenError};
use crate::domain::kie::Transport;
use crate::domain::oidc::{accepted_issuers, discovery_url, parse_discovery, parse_token_answer, token_request, Discovery, TokenAnswer};
use crate::domain::signature::sha256_hex;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use worker::web_sys::Headers;

const TIMEOUT_MS: u64 = 10_000;
const CACHE_TTL_MS: i64 = 3_600_000;
/// A `kid` we do not know makes us fetch the keys again, but not more often than this.
const MIN_FORCED_REFRESH_MS: i64 = 10_000;

thread_local! {
    /// (cache key, fetched at, JSON text): discovery documents and key sets.
    static MEMO: RefCell<Vec<(String, i64, String)>> = const { RefCell::new(Vec::new()) };
    static LAST_FORCED_REFRESH: Cell<i64> = const { Cell::new(0) };
}

fn memo_get(key: &str, now: i64) -> Option<String> {
    MEMO.with(|m| m.borrow().iter().find(|(k, at, _)| k == key && now - at < CACHE_TTL_MS).map(|(_, _, v)| v.clone()))
}

fn memo_put(key: &str, now: i64, value: &str) {
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        m.retain(|(k, _, _)| k != key);
        m.push((key.to_string(), now, value.to_string()));
    });
}

/// Why signing in with the provider failed.
#[derive(Debug)]
pub enum ProviderError {
    /// The provider could not be reached or answered nonsense.
    Unreachable(String),
    /// The provider's discovery document cannot be used with our settings.
    Unusable(String),
    /// The token endpoint refused the code (already used, expired, not ours).
    Refused(String),
    /// The ID token did not check out.
    Token(TokenError),
}

impl ProviderError {
    /// What the person is told (the cause goes to the log only).
    pub fn into_app_error(self) -> AppError {
        match self {
            ProviderError::Unreachable(why) => {
                AppError::new(ErrorCode::UpstreamUnavailable, "The sign-in provider cannot be reached right now. Try again in a minute.")
                    .with_internal(why)
            }
            ProviderError::Unusable(why) => {
                AppError::new(ErrorCode::UpstreamError, "Signing in is not set up correctly. Please tell the operator.").with_internal(why)
            }
            ProviderError::Refused(code) => AppError::unauthorized(
                "The sign-in provider did not accept this sign-in (it may have been used already). Please start again.",
            )
            .with_internal(format!("token endpoint refused the code: {code}")),
            ProviderError::Token(e) => {
                AppError::unauthorized("Your sign-in could not be verified. Please start again.").with_internal(e.reason())
            }
        }
    }
}

pub struct OidcClient<'a> {
    pub settings: &'a OidcSettings,
    pub production: bool,
    pub cache: Option<Cache>,
    pub log: &'a Log,
}

impl OidcClient<'_> {
    async fn call(&self, op: &str, url: &str, method: &str, headers: Headers, body: Option<&str>) -> Transport {
        let started = now_ms();
        let t = outbound::fetch(self.log, url, method, headers, body, TIMEOUT_MS).await;
        let status = match &t {
            Transport::Response { status, .. } => json!(status),
            _ => Value::Null,
        };
        self.log.info(
            "oidc.call",
            "call to the sign-in provider",
            json!({ "oidc_op": op, "oidc_http_status": status, "oidc_latency_ms": now_ms() - started,
                    "oidc_transport": t.to_string() }),
        );
        t
    }

    async fn get_json(&self, op: &str, url: &str) -> Result<Vec<u8>, ProviderError> {
        let headers = outbound::headers();
        let _ = headers.set("Accept", "application/json");
        match self.call(op, url, "GET", headers, None).await {
            Transport::Response { status: 200, body } => Ok(body),
            other => Err(ProviderError::Unreachable(format!("{op} {url}: {other}"))),
        }
    }

    async fn cached(&self, key: &str, now: i64) -> Option<String> {
        if let Some(v) = memo_get(key, now) {
            return Some(v);
        }
        let v = self.cache.as_ref()?.get(key).await.ok().flatten()?;
        memo_put(key, now, &v);
        Some(v)
    }

    async fn remember(&self, key: &str, now: i64, value: &str) {
        memo_put(key, now, value);
        if let Some(cache) = &self.cache {
            let _ = cache.put(key, value, (CACHE_TTL_MS / 1000) as u64).await;
        }
    }

    fn discovery_key(&self) -> String {
        format!("oidc:discovery:{}", &sha256_hex(self.settings.issuer.as_bytes())[..16])
    }

    fn parse(&self, body: &[u8]) -> Result<Discovery, ProviderError> {
        parse_discovery(body, &self.settings.issuer, self.production).map_err(ProviderError::Unusable)
    }

    /// The discovery document, fetched now (and cached as fetched).
    pub async fn discover_fresh(&self) -> Result<Discovery, ProviderError> {
        let body = self.get_json("discovery", &discovery_url(&self.settings.issuer)).await?;
        let d = self.parse(&body)?;
        if let Ok(text) = std::str::from_utf8(&body) {
            self.remember(&self.discovery_key(), now_ms(), text).await;
        }
        Ok(d)
    }

    /// The discovery document, from the cache when it is there.
    pub async fn discovery(&self) -> Result<Discovery, ProviderError> {
        match self.cached(&self.discovery_key(), now_ms()).await {
            Some(text) => self.parse(text.as_bytes()),
            None => self.discover_fresh().await,
        }
    }

    fn jwks_key(d: &Discovery) -> String {
        format!("oidc:jwks:{}", &sha256_hex(d.jwks_uri.as_bytes())[..16])
    }

    /// The provider's keys, fetched now.
    pub async fn jwks_fresh(&self, d: &Discovery) -> Result<Value, ProviderError> {
        let body = self.get_json("jwks", &d.jwks_uri).await?;
        let jwks: Value = serde_json::from_slice(&body).map_err(|_| ProviderError::Unreachable("jwks is not JSON".into()))?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err(ProviderError::Unreachable("jwks has no keys array".into()));
        }
        self.remember(&Self::jwks_key(d), now_ms(), &jwks.to_string()).await;
        Ok(jwks)
    }

    async fn jwks(&self, d: &Discovery) -> Result<Value, ProviderError> {
        if let Some(jwks) = self.cached(&Self::jwks_key(d), now_ms()).await.and_then(|v| serde_json::from_str(&v).ok()) {
            return Ok(jwks);
        }
        self.jwks_fresh(d).await
    }

    /// Exchanges the code (with the PKCE verifier) for an ID token.
    pub async fn exchange_code(&self, d: &Discovery, code: &str, code_verifier: &str, redirect_uri: &str) -> Result<String, ProviderError> {
        let s = self.settings;
        let (authorization, body) = token_request(d.client_auth, &s.client_id, &s.client_secret, code, redirect_uri, code_verifier);
        let headers = outbound::headers();
        let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
        let _ = headers.set("Accept", "application/json");
        if let Some(a) = authorization {
            let _ = headers.set("Authorization", &a);
        }
        match self.call("token", &d.token_endpoint, "POST", headers, Some(&body)).await {
            Transport::Response { status, body } => match parse_token_answer(status, &body) {
                TokenAnswer::IdToken(t) => Ok(t),
                TokenAnswer::Refused(code) => Err(ProviderError::Refused(code)),
                TokenAnswer::Unusable(why) => Err(ProviderError::Unreachable(why)),
            },
            other => Err(ProviderError::Unreachable(format!("token endpoint: {other}"))),
        }
    }

    /// Verifies an ID token: its signature against the provider's keys, then
    /// its claims (issuer, audience, times, this sign-in's nonce).
    pub async fn verify_id_token(&self, d: &Discovery, token: &str, nonce: &str, now_ms: i64) -> Result<Identity, ProviderError> {
        let jws = parse_compact(token).map_err(ProviderError::Token)?;
        let mut choice = select_key(&self.jwks(d).await?, jws.alg, jws.kid.as_deref());
        if choice == KeyChoice::UnknownKid && now_ms - LAST_FORCED_REFRESH.with(Cell::get) >= MIN_FORCED_REFRESH_MS {
            // The provider may have rotated its keys since we cached them.
            LAST_FORCED_REFRESH.with(|c| c.set(now_ms));
            choice = select_key(&self.jwks_fresh(d).await?, jws.alg, jws.kid.as_deref());
        }
        let key = match choice {
            KeyChoice::Found(key) => key,
            KeyChoice::UnknownKid => return Err(ProviderError::Token(TokenError::UnknownKey)),
            KeyChoice::NoUsableKey => return Err(ProviderError::Token(TokenError::NoUsableKey)),
        };
        match webcrypto::verify(jws.alg, &key, jws.signing_input.as_bytes(), &jws.signature).await {
            Ok(true) => {}
            Ok(false) => return Err(ProviderError::Token(TokenError::BadSignature)),
            Err(e) => {
                self.log.warn("oidc.key_unusable", "the provider's key could not be imported", json!({ "cause": e.internal }));
                return Err(ProviderError::Token(TokenError::BadSignature));
            }
        }
        let issuers = accepted_issuers(&d.issuer);
        let expected = Expected { issuers: &issuers, client_id: &self.settings.client_id, nonce, now_s: now_ms / 1000 };
        validate_claims(&jws.claims, &expected).map_err(ProviderError::Token)
    }
}

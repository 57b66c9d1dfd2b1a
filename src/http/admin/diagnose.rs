//! `GET /api/admin/diagnose`: walks the chain a production request takes, link
//! by link, inside the deployed Worker, and says for each one pass/fail/skip
//! with a hint a person can act on. Never spends Kie credits, never touches
//! user data. `?format=text` gives a report a person can read.

use super::super::ctx::{config_error, Ctx};
use super::super::health::probe_cache_key;
use super::super::request::Request;
use super::super::{auth, json_response};
use crate::adapters::cache::Cache;
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::d1::Db;
use crate::adapters::files::Files;
use crate::adapters::kie::KieClient;
use crate::adapters::oidc::OidcClient;
use crate::adapters::outbound;
use crate::adapters::settings::{read_config, setting};
use crate::adapters::store::ops;
use crate::adapters::stripe::StripeClient;
use crate::adapters::turnstile;
use crate::build_info::{COMMIT, VERSION};
use crate::domain::config::{Config, ConfigProblem, REQUIRED_SECRETS};
use crate::domain::error::{AppError, AppResult};
use crate::domain::jwt::count_usable_keys;
use crate::domain::kie::Transport;
use crate::domain::oidc::discovery_url;
use crate::domain::signature::{probe_signature, signed_file_url};
use crate::domain::turnstile::Verdict;
use serde_json::{json, Value};
use worker::Response;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[derive(Default)]
struct Report(Vec<Value>);

impl Report {
    fn add(&mut self, name: &str, status: &str, hint: impl Into<String>) {
        self.0.push(json!({ "name": name, "status": status, "hint": hint.into() }));
    }
    fn pass(&mut self, name: &str, hint: impl Into<String>) {
        self.add(name, "pass", hint)
    }
    fn fail(&mut self, name: &str, hint: impl Into<String>) {
        self.add(name, "fail", hint)
    }
    fn skip(&mut self, name: &str, hint: impl Into<String>) {
        self.add(name, "skip", hint)
    }
}

/// A tiny valid PNG used for the storage round trip.
const PROBE_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63,
    0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44,
    0xAE, 0x42, 0x60, 0x82,
];

/// Unlike the other admin endpoints, diagnose must work, and say what is
/// wrong, when other settings are broken: it needs only `ADMIN_TOKEN`.
pub async fn run(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let admin_token = setting(&ctx.env, "ADMIN_TOKEN")
        .ok_or_else(|| config_error(&[ConfigProblem { name: "ADMIN_TOKEN".into(), problem: "missing".into() }]))?;
    auth::admin(ctx, &req, admin_token.trim()).await?;
    let config = read_config(&ctx.env);
    let nonce = crate::domain::signature::base32(&random_bytes::<10>()?);
    let mut r = Report::default();

    settings(&mut r, &config);
    let db = ctx.db().ok();
    d1(&mut r, db.as_ref()).await;
    kv(ctx, &mut r, &nonce).await;
    match &config {
        Ok(cfg) => {
            let reaches_us = public_base_url(ctx, &mut r, cfg, &nonce).await;
            r2(ctx, &mut r, Some(cfg), reaches_us).await;
            kie(ctx, &mut r, cfg).await;
            sign_in(ctx, &mut r, cfg).await;
            billing(ctx, &mut r, cfg).await;
        }
        Err(_) => {
            r2(ctx, &mut r, None, false).await;
            for name in ["public base url", "public input url", "kie key", "sign-in provider"] {
                r.skip(name, "needs a complete configuration first");
            }
        }
    }
    let production = setting(&ctx.env, "ENVIRONMENT").is_some_and(|e| e.trim() == "production");
    cron(&mut r, db.as_ref(), production).await;

    let failed = r.0.iter().filter(|c| c["status"] == "fail").count();
    let status = if failed == 0 { "pass" } else { "fail" };
    let environment = config.as_ref().map(|c| c.environment.clone()).unwrap_or_else(|_| "unknown".into());
    ctx.log.info("diagnose", "diagnose report", json!({ "failed_checks": failed, "environment": environment }));
    if ctx.query("format") == Some("text") {
        let mut text = format!(
            "diagnose: {} ({} failed) environment={} version={} commit={}\n",
            status.to_uppercase(),
            failed,
            environment,
            VERSION,
            COMMIT
        );
        for c in &r.0 {
            let field = |k: &str| c[k].as_str().unwrap_or("").to_string();
            text.push_str(&format!("[{:4}] {:24} {}\n", field("status"), field("name"), field("hint")));
        }
        let resp = Response::ok(text).map_err(|e| AppError::internal(e.to_string()))?;
        let _ = resp.headers().set("Content-Type", "text/plain; charset=utf-8");
        return Ok(resp);
    }
    json_response(200, &json!({ "status": status, "environment": environment, "version": VERSION, "commit": COMMIT, "checks": r.0 }))
}

fn settings(r: &mut Report, config: &Result<Config, Vec<ConfigProblem>>) {
    match config {
        Ok(cfg) => {
            for name in REQUIRED_SECRETS {
                r.pass(&format!("setting {name}"), "present and well-formed");
            }
            match &cfg.kie_webhook_hmac_key {
                Some(_) => r.pass("setting KIE_WEBHOOK_HMAC_KEY", "set: callbacks must carry Kie's HMAC signature"),
                None => r.skip(
                    "setting KIE_WEBHOOK_HMAC_KEY",
                    "not set: callbacks are authenticated by their per-task token only; enable HMAC at kie.ai/settings and set this secret",
                ),
            }
        }
        Err(problems) => {
            for name in REQUIRED_SECRETS {
                if !problems.iter().any(|p| p.name == *name) {
                    r.pass(&format!("setting {name}"), "present and well-formed");
                }
            }
            for p in problems {
                r.fail(
                    &format!("setting {}", p.name),
                    format!(
                        "{}: set it with `wrangler secret put {} --env <environment>` (secrets) or in [env.<environment>.vars]",
                        p.problem, p.name
                    ),
                );
            }
        }
    }
}

async fn d1(r: &mut Report, db: Option<&Db>) {
    let Some(db) = db else {
        r.fail("d1", "no D1 binding named DB in this environment's wrangler.toml section");
        return;
    };
    match ops::latest_migration(db).await {
        Ok(Some(name)) if name == LATEST_MIGRATION => r.pass("d1", format!("reachable; migrations current ({name})")),
        Ok(Some(name)) => r.fail("d1", format!("migrations behind: database at {name}, code expects {LATEST_MIGRATION}; run `wrangler d1 migrations apply DB --remote --env <environment>`")),
        Ok(None) => r.fail("d1", "no migrations applied; run `wrangler d1 migrations apply DB --remote --env <environment>`"),
        Err(e) => r.fail("d1", format!("D1 query failed ({}); check the database_id of this environment", e.internal.unwrap_or_default())),
    }
}

async fn kv(ctx: &Ctx, r: &mut Report, nonce: &str) {
    let Ok(cache) = Cache::from_env(&ctx.env, &ctx.log) else {
        r.fail("kv", "no KV binding named CACHE in this environment");
        return;
    };
    let key = probe_cache_key(nonce);
    if let Err(e) = cache.put(&key, nonce, 120).await {
        r.fail("kv", format!("KV write failed: {}", e.internal.unwrap_or_default()));
        return;
    }
    match cache.get(&key).await {
        Ok(Some(v)) if v == nonce => r.pass("kv", "written and read back"),
        Ok(_) => r.fail("kv", "KV read did not return what was written"),
        Err(e) => r.fail("kv", format!("KV read failed: {}", e.internal.unwrap_or_default())),
    }
}

/// Fetches `/api/health?probe=<nonce>` through PUBLIC_BASE_URL: only this very
/// deployment knows the nonce (in its KV) and can sign it (with its secret).
async fn public_base_url(ctx: &Ctx, r: &mut Report, cfg: &Config, nonce: &str) -> bool {
    let production = cfg.environment == "production";
    let Some(base) = &cfg.public_base_url else {
        let hint = "PUBLIC_BASE_URL is not set: Kie cannot send callbacks; tasks complete by polling and the cron only";
        if production {
            r.fail("public base url", hint)
        } else {
            r.skip("public base url", hint)
        }
        return false;
    };
    let expected = probe_signature(&cfg.file_url_secret, nonce);
    let probe = format!("{base}/api/health?probe={nonce}");
    let ok = match outbound::fetch(&ctx.log, &probe, "GET", outbound::headers(), None, 10_000).await {
        Transport::Response { status, body } => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let signed = v.pointer("/probe/signature").and_then(Value::as_str) == Some(expected.as_str());
            let known = v.pointer("/probe/known").and_then(Value::as_bool) == Some(true);
            if signed && known {
                r.pass("public base url", format!("{base} reaches this very deployment ({})", cfg.environment));
                true
            } else {
                r.fail(
                    "public base url",
                    format!("{base} answered HTTP {status} but it is not this deployment (another Worker or environment); set PUBLIC_BASE_URL of env {} to this Worker's own URL", cfg.environment),
                );
                false
            }
        }
        other => {
            r.fail("public base url", format!("{base} is not reachable from the Worker ({other}); Kie could not reach it either"));
            false
        }
    };
    let https = base.starts_with("https://");
    if production && !https {
        r.fail("callback url", format!("{base} is not https; Kie callbacks need a public https URL"));
    } else {
        r.pass("callback url", format!("Kie calls {base}/api/webhooks/kie-image?task=<id>&token=<per-task token>"));
    }
    ok
}

async fn r2(ctx: &Ctx, r: &mut Report, cfg: Option<&Config>, reaches_us: bool) {
    let Ok(files) = Files::from_env(&ctx.env, &ctx.log) else {
        r.fail("r2", "no R2 binding named FILES in this environment");
        r.skip("public input url", "needs R2");
        return;
    };
    let key = format!("in/diagnose-{}.png", now_ms());
    if let Err(e) = files.put_bytes(&key, PROBE_PNG, "image/png").await {
        r.fail("r2", format!("R2 write failed: {}", e.internal.unwrap_or_default()));
        r.skip("public input url", "needs R2");
        return;
    }
    r.pass("r2", "written");
    match cfg {
        Some(cfg) if reaches_us || cfg.public_base_url.is_none() => {
            let origin = ctx.public_origin(cfg);
            let url = signed_file_url(&origin, &cfg.file_url_secret, &key, 600, now_ms());
            match outbound::fetch(&ctx.log, &url, "GET", outbound::headers(), None, 10_000).await {
                Transport::Response { status: 200, body } if body == PROBE_PNG => r.pass(
                    "public input url",
                    format!("an input signed by this Worker was fetched back through {origin}/files/ without credentials"),
                ),
                Transport::Response { status, .. } => r.fail(
                    "public input url",
                    format!("a signed input URL through {origin} answered HTTP {status}; Kie would fail edits with failCode 422"),
                ),
                other => r.fail("public input url", format!("could not fetch {origin}/files/…: {other}")),
            }
        }
        Some(_) => r.skip("public input url", "PUBLIC_BASE_URL does not reach this deployment (see above)"),
        None => r.skip("public input url", "needs a complete configuration first"),
    }
    let _ = files.delete(&key).await;
}

async fn kie(ctx: &Ctx, r: &mut Report, cfg: &Config) {
    let client = KieClient { base: &cfg.kie_api_base, api_key: &cfg.kie_api_key, timeout_ms: 10_000, log: &ctx.log };
    match client.credit().await {
        Ok(balance) => r.pass("kie key", format!("accepted by {}; account balance {} Kie credits", cfg.kie_api_base, json!(balance))),
        Err(why) => r.fail("kie key", format!("the free credit call to {} failed: {why}", cfg.kie_api_base)),
    }
}

/// Sign-in with the OpenID provider: the redirect URI to register, the
/// discovery document and the signing keys (fetched now, not from the cache),
/// and the Turnstile secret (siteverify with a dummy token: a valid secret
/// gets the token refused, an invalid one gets `invalid-input-secret`).
async fn sign_in(ctx: &Ctx, r: &mut Report, cfg: &Config) {
    let Some(settings) = &cfg.oidc else {
        r.skip("sign-in provider", "OIDC_CLIENT_ID is not set: people sign in with API keys only");
        return;
    };
    let production = cfg.environment == "production";
    let redirect_uri = format!("{}/auth/callback", ctx.public_origin(cfg));
    match &cfg.public_base_url {
        Some(base) if production && !base.starts_with("https://") => {
            r.fail("oidc redirect uri", format!("{redirect_uri} is not https; providers refuse http redirect URIs in production"))
        }
        Some(_) => r.pass(
            "oidc redirect uri",
            format!("{redirect_uri}: register exactly this as an authorised redirect URI of client {}", settings.client_id),
        ),
        None if production => {
            r.fail("oidc redirect uri", "PUBLIC_BASE_URL is not set: the redirect URI would follow whatever host a request used")
        }
        None => r.skip("oidc redirect uri", format!("PUBLIC_BASE_URL is not set: the redirect URI follows the request ({redirect_uri})")),
    }
    let client = OidcClient { settings, production, cache: None, log: &ctx.log };
    let discovery = match client.discover_fresh().await {
        Ok(d) => {
            r.pass(
                "oidc discovery",
                format!("{} answers for issuer {} (PKCE S256, client auth {:?})", discovery_url(&settings.issuer), d.issuer, d.client_auth),
            );
            d
        }
        Err(e) => {
            r.fail("oidc discovery", format!("{}: {}", discovery_url(&settings.issuer), e.into_app_error().internal.unwrap_or_default()));
            r.skip("oidc keys", "needs the discovery document");
            return;
        }
    };
    match client.jwks_fresh(&discovery).await {
        Ok(jwks) => match count_usable_keys(&jwks) {
            0 => r.fail("oidc keys", format!("{} has no RS256 or ES256 signing key", discovery.jwks_uri)),
            n => r.pass("oidc keys", format!("{} has {n} usable signing key(s)", discovery.jwks_uri)),
        },
        Err(e) => r.fail("oidc keys", format!("{}: {}", discovery.jwks_uri, e.into_app_error().internal.unwrap_or_default())),
    }
    match &cfg.turnstile {
        None => r.skip("turnstile", "TURNSTILE_SECRET_KEY is not set: first sign-ins have no human check (the per-IP limit still applies)"),
        Some(t) => match turnstile::verify(t, "diagnose-dummy-token", None, &ctx.log).await {
            Ok(Verdict::Failed(codes)) if codes.iter().any(|c| c == "invalid-input-secret") => {
                r.fail("turnstile", "siteverify says TURNSTILE_SECRET_KEY is not valid; copy it from the Turnstile widget's settings")
            }
            Ok(_) => r.pass("turnstile", format!("{} accepts the secret key", t.verify_url)),
            Err(why) => r.fail("turnstile", format!("siteverify did not answer: {why}")),
        },
    }
}

/// Buying credits: the Stripe key (the free balance call), the webhook
/// secret, and where Checkout sends people back. Skipped when it is off.
async fn billing(ctx: &Ctx, r: &mut Report, cfg: &Config) {
    let Some(b) = &cfg.billing else {
        for name in ["stripe key", "stripe webhook", "stripe return url"] {
            r.skip(name, "buying credits is off: set STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and CREDIT_PACKS to turn it on");
        }
        return;
    };
    let production = cfg.environment == "production";
    let client = StripeClient { base: &b.api_base, secret_key: &b.secret_key, timeout_ms: 10_000, log: &ctx.log };
    match client.check_key().await {
        Ok(_) if production && b.test_mode() => {
            r.fail("stripe key", "a test-mode key (sk_test_…) in production: no real payment can be taken; set the live key")
        }
        Ok(live) => r.pass(
            "stripe key",
            format!("accepted by {} ({} mode); {} pack(s) on sale", b.api_base, if live { "live" } else { "test" }, b.packs.len()),
        ),
        Err(why) => r.fail("stripe key", format!("the balance call to {} failed: {why}; check STRIPE_SECRET_KEY", b.api_base)),
    }
    let origin = ctx.public_origin(cfg);
    r.pass(
        "stripe webhook",
        format!(
            "STRIPE_WEBHOOK_SECRET is set; Stripe must send checkout.session.* and charge.refunded / charge.dispute.created events to {origin}/api/webhooks/stripe"
        ),
    );
    match &cfg.public_base_url {
        Some(base) if production && !base.starts_with("https://") => {
            r.fail("stripe return url", format!("{base} is not https; Checkout needs https return URLs in production"))
        }
        Some(base) => r.pass("stripe return url", format!("Checkout returns people to {base}/?checkout=success|cancel")),
        None if production => {
            r.fail("stripe return url", "PUBLIC_BASE_URL is not set: Checkout would return people to whatever origin a request came from")
        }
        None => r.skip("stripe return url", "PUBLIC_BASE_URL is not set: Checkout returns people to the origin of the checkout request"),
    }
}

async fn cron(r: &mut Report, db: Option<&Db>, production: bool) {
    let Some(db) = db else {
        r.skip("cron", "needs D1");
        return;
    };
    let ago_s = |t: i64| (now_ms() - t) / 1000;
    match ops::last_cron_run(db).await {
        Ok(Some(run)) if ago_s(run.finished_at) < 300 => {
            r.pass("cron", format!("last run {}s ago: {}", ago_s(run.finished_at), run.summary))
        }
        Ok(Some(run)) => {
            r.fail("cron", format!("last run {} min ago; check [triggers] crons of this environment", ago_s(run.finished_at) / 60))
        }
        Ok(None) if production => r.fail("cron", "the scheduled job has never run in this environment; check [triggers] crons"),
        Ok(None) => r.skip("cron", "the scheduled job has not run yet (under wrangler dev it runs on `curl <worker>/__scheduled`)"),
        Err(_) => r.fail("cron", "could not read the cron history"),
    }
}

//! `GET /api/admin/diagnose`: walks the chain a production request takes, link
//! by link, inside the deployed Worker, and says for each one pass/warn/fail/
//! skip with a hint a person can act on. Never spends Kie credits, never
//! touches user data. `?format=text` gives a report a person can read.

use super::super::ctx::Ctx;
use super::super::health::probe_cache_key;
use super::super::json_response;
use super::super::request::Request;
use super::super::response::{Body, Response};
use crate::adapters::cache::Cache;
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::d1::Db;
use crate::adapters::files::Files;
use crate::adapters::kie::KieClient;
use crate::adapters::metrics;
use crate::adapters::oidc::OidcClient;
use crate::adapters::outbound;
use crate::adapters::settings::{read_config, setting};
use crate::adapters::store::{monitoring, ops};
use crate::adapters::stripe::StripeClient;
use crate::adapters::turnstile;
use crate::build_info::{COMMIT, VERSION};
use crate::domain::config::{Config, ConfigProblem, REQUIRED_SECRETS};
use crate::domain::error::AppResult;
use crate::domain::jwt::count_usable_keys;
use crate::domain::kie::Transport;
use crate::domain::migrations::{apply_command, missing};
use crate::domain::monitor::alerts::{event, plain_number, rejection_hint, KieCheck};
use crate::domain::monitor::config::MonitorConfig;
use crate::domain::monitor::ALERT_WINDOW_MS;
use crate::domain::oidc::discovery_url;
use crate::domain::signature::{probe_signature, signed_file_url};
use crate::domain::time::rfc3339;
use crate::domain::turnstile::Verdict;
use serde_json::{json, Value};
use std::time::Duration;
use worker::Delay;

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
    fn warn(&mut self, name: &str, hint: impl Into<String>) {
        self.add(name, "warn", hint)
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
    super::operator(ctx, &req).await?;
    let config = read_config(&ctx.env);
    let (monitor, monitor_problems) = MonitorConfig::load(&|name| setting(&ctx.env, name));
    let nonce = crate::domain::signature::base32(&random_bytes::<10>()?);
    let mut r = Report::default();

    settings(&mut r, &config, &monitor_problems);
    let db = ctx.db().ok();
    d1(&mut r, db.as_ref(), &monitor.environment).await;
    kv(ctx, &mut r, &nonce).await;
    match &config {
        Ok(cfg) => {
            let reaches_us = public_base_url(ctx, &mut r, cfg, &nonce).await;
            r2(ctx, &mut r, Some(cfg), reaches_us).await;
            kie(ctx, &mut r, cfg, &monitor).await;
            sign_in(ctx, &mut r, cfg).await;
            billing(ctx, &mut r, cfg).await;
        }
        Err(_) => {
            r2(ctx, &mut r, None, false).await;
            for name in ["public base url", "public input url", "kie key", "kie balance", "sign-in provider"] {
                r.skip(name, "needs a complete configuration first");
            }
        }
    }
    let production = monitor.environment == "production";
    callbacks(ctx, &mut r, db.as_ref()).await;
    alert_delivery(&mut r, db.as_ref(), &monitor, production).await;
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
        return Ok(Response::new(200, Body::Text(text)).with_header("Content-Type", "text/plain; charset=utf-8"));
    }
    json_response(200, &json!({ "status": status, "environment": environment, "version": VERSION, "commit": COMMIT, "checks": r.0 }))
}

fn settings(r: &mut Report, config: &Result<Config, Vec<ConfigProblem>>, monitor_problems: &[ConfigProblem]) {
    for p in monitor_problems {
        r.fail(
            &format!("setting {}", p.name),
            format!("{}: alerts and the Kie balance check use their default until it is fixed (README, Configuration)", p.problem),
        );
    }
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

async fn d1(r: &mut Report, db: Option<&Db>, environment: &str) {
    let Some(db) = db else {
        r.fail("d1", "no D1 binding named DB in this environment's wrangler.toml section");
        return;
    };
    let command = apply_command(environment);
    match ops::applied_migrations(db).await {
        Ok(applied) => match (missing(&applied, MIGRATIONS).as_slice(), applied.last()) {
            ([], Some(latest)) => r.pass("d1", format!("reachable; migrations current ({latest})")),
            ([], None) => r.pass("d1", "reachable; this build has no migrations"),
            (absent, Some(latest)) => {
                r.fail("d1", format!("migrations not applied: {} (the database is at {latest}); run `{command}`", absent.join(", ")))
            }
            (absent, None) => r.fail("d1", format!("no migrations applied (missing {}); run `{command}`", absent.join(", "))),
        },
        Err(e) if e.internal.as_deref().is_some_and(|c| c.contains("no such table")) => {
            r.fail("d1", format!("no migrations applied (missing {}); run `{command}`", MIGRATIONS.join(", ")))
        }
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

/// GETs one of our own public URLs. A connection that breaks at once is
/// asked once more: one transient network error is not a misconfiguration,
/// and a wrong URL fails both times.
async fn fetch_own(ctx: &Ctx, url: &str) -> Transport {
    let first = outbound::fetch(&ctx.log, url, "GET", outbound::headers(), None, 10_000).await;
    if !matches!(first, Transport::Unreachable(_)) {
        return first;
    }
    Delay::from(Duration::from_millis(250)).await;
    outbound::fetch(&ctx.log, url, "GET", outbound::headers(), None, 10_000).await
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
    let ok = match fetch_own(ctx, &probe).await {
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
            match fetch_own(ctx, &url).await {
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

/// The Kie key (the free credit call) and whether the balance pays for tasks.
async fn kie(ctx: &Ctx, r: &mut Report, cfg: &Config, monitor: &MonitorConfig) {
    let client = KieClient { base: &cfg.kie_api_base, api_key: &cfg.kie_api_key, timeout_ms: 10_000, log: &ctx.log };
    let balance = match KieCheck::from_credit_call(&client.credit_call().await) {
        KieCheck::Balance(b) => {
            r.pass("kie key", format!("accepted by {}; account balance {} Kie credits", cfg.kie_api_base, plain_number(b)));
            b
        }
        KieCheck::KeyRejected(why) => {
            r.fail(
                "kie key",
                format!(
                    "{} rejects KIEAI_APIKEY ({why}); set this Kie account's key with `wrangler secret put KIEAI_APIKEY --env <environment>`",
                    cfg.kie_api_base
                ),
            );
            r.skip("kie balance", "needs a key Kie accepts");
            return;
        }
        KieCheck::Unavailable(why) => {
            r.fail("kie key", format!("the free credit call to {} failed: {why}", cfg.kie_api_base));
            r.skip("kie balance", "Kie did not answer the credit call");
            return;
        }
        KieCheck::NotChecked => {
            r.skip("kie key", "not asked");
            r.skip("kie balance", "not asked");
            return;
        }
    };
    let Some((model, cost)) = monitor.cheapest_kie_cost() else {
        r.skip("kie balance", "no model has a Kie cost");
        return;
    };
    let tasks = if cost > 0.0 { (balance / cost).floor() as i64 } else { i64::MAX };
    let warn_at = plain_number(monitor.kie_balance_warn);
    if balance < cost {
        r.fail(
            "kie balance",
            format!(
                "{} Kie credits cannot pay for the cheapest model ({model}, about {} Kie credits per task): Kie refuses every new \
                 task; top up at kie.ai (task costs: KIE_COST_<MODEL>)",
                plain_number(balance),
                plain_number(cost)
            ),
        );
    } else if balance < monitor.kie_balance_warn {
        r.warn(
            "kie balance",
            format!(
                "{} Kie credits, below KIE_BALANCE_WARN ({warn_at}): about {tasks} {model} tasks left; top up at kie.ai",
                plain_number(balance)
            ),
        );
    } else {
        r.pass(
            "kie balance",
            format!("{} Kie credits: about {tasks} {model} tasks; warns below {warn_at} (KIE_BALANCE_WARN)", plain_number(balance)),
        );
    }
}

/// Callbacks answered 401 lately: a wrong HMAC key, Kie not signing, or
/// another deployment behind this URL leave tasks to polling, minutes late.
async fn callbacks(ctx: &Ctx, r: &mut Report, db: Option<&Db>) {
    let Some(db) = db else {
        r.skip("callbacks", "needs D1");
        return;
    };
    metrics::flush(db, &ctx.log).await;
    let events = match monitoring::events_since(db, now_ms() - ALERT_WINDOW_MS).await {
        Ok(events) => events,
        Err(_) => {
            r.skip("callbacks", "needs the monitoring tables (migration 0003_monitoring.sql, see d1)");
            return;
        }
    };
    let rejected: Vec<(&str, i64)> =
        events.iter().filter_map(|e| e.kind.strip_prefix(event::CALLBACK_REJECTED).map(|cause| (cause, e.count))).collect();
    let window_min = ALERT_WINDOW_MS / 60_000;
    match rejected.iter().max_by_key(|r| r.1) {
        None => r.pass("callbacks", format!("no Kie callback was rejected in the last {window_min} min")),
        Some((cause, _)) => {
            let total: i64 = rejected.iter().map(|(_, n)| n).sum();
            let by_cause: Vec<String> = rejected.iter().map(|(c, n)| format!("{c} {n}")).collect();
            r.fail(
                "callbacks",
                format!(
                    "{total} Kie callbacks were answered 401 in the last {window_min} min ({}); likely cause: {}",
                    by_cause.join(", "),
                    rejection_hint(cause)
                ),
            );
        }
    }
}

/// Whether alerts reach a person.
async fn alert_delivery(r: &mut Report, db: Option<&Db>, monitor: &MonitorConfig, production: bool) {
    let Some(receiver) = &monitor.receiver else {
        let hint = "ALERT_WEBHOOK_URL is not set (or not usable, see its setting): alerts are recorded (GET /api/admin/alerts, /admin) \
                    but nobody is told; set it with `wrangler secret put ALERT_WEBHOOK_URL --env <environment>`";
        if production {
            r.warn("alert delivery", hint)
        } else {
            r.skip("alert delivery", hint)
        }
        return;
    };
    let Some(db) = db else {
        r.skip("alert delivery", "needs D1");
        return;
    };
    let format = receiver.format.as_str();
    match monitoring::delivery_status(db, now_ms() - 7 * 86_400_000).await {
        Ok(s) if s.waiting > 0 => r.fail(
            "alert delivery",
            format!(
                "{} alert messages are waiting: the {format} receiver answered \"{}\" on the last try; each cron run retries",
                s.waiting,
                s.last_error.unwrap_or_default()
            ),
        ),
        Ok(s) => r.pass(
            "alert delivery",
            match s.last_sent_at {
                Some(t) => format!("{format} receiver configured; last message delivered at {}", rfc3339(t)),
                None => format!("{format} receiver configured; no alert this week"),
            },
        ),
        Err(_) => r.skip("alert delivery", "needs the monitoring tables (migration 0003_monitoring.sql, see d1)"),
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
    let client = StripeClient::new(b, &ctx.log);
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
        Err(e) if e.internal.as_deref().is_some_and(|c| c.contains("no such table")) => r.skip("cron", "needs the migrations (see d1)"),
        Err(_) => r.fail("cron", "could not read the cron history"),
    }
}

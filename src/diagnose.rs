//! `GET /api/admin/diagnose`: walks the chain a production request takes, link
//! by link, inside the deployed Worker. Never spends Kie credits and never
//! touches user data. `?format=text` gives a report a person can read.

use crate::domain::config::{Config, REQUIRED_SECRETS};
use crate::domain::error::{AppError, AppResult};
use crate::domain::kie::Transport;
use crate::edge::db::Db;
use crate::edge::kie_client::{fetch_with_timeout, KieClient, USER_AGENT};
use crate::http::{json_response, random_bytes, Ctx};
use crate::pipeline::{now_ms, FILES_BUCKET};
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Headers, Method, Response};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

struct Report(Vec<Value>);

impl Report {
    fn add(&mut self, name: &str, status: &str, hint: impl Into<String>) {
        self.0.push(json!({ "name": name, "status": status, "hint": hint.into() }));
    }
}

/// A tiny valid PNG used for the storage round trip.
const PROBE_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49,
    0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

pub async fn run(ctx: &Ctx, cfg: &Config, db: &Db) -> AppResult<Response> {
    let mut r = Report(Vec::new());
    let production = cfg.environment == "production";

    for name in REQUIRED_SECRETS {
        r.add(&format!("secret {name}"), "pass", "present and well-formed");
    }
    match &cfg.kie_webhook_hmac_key {
        Some(_) => r.add("secret KIE_WEBHOOK_HMAC_KEY", "pass", "set: callbacks must carry Kie's HMAC signature"),
        None => r.add(
            "secret KIE_WEBHOOK_HMAC_KEY",
            "skip",
            "not set: callbacks are authenticated by the per-task token only; enable HMAC at kie.ai/settings and set this secret",
        ),
    }

    // D1 and migrations.
    #[derive(Deserialize)]
    struct Mig {
        name: String,
    }
    let applied = match db.stmt("SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1", &[]) {
        Ok(stmt) => db.first::<Mig>(stmt).await.map(|m| m.map(|m| m.name)),
        Err(e) => Err(e),
    };
    match applied {
        Ok(Some(name)) if name == LATEST_MIGRATION => r.add("d1", "pass", format!("reachable; migrations current ({name})")),
        Ok(Some(name)) => r.add("d1", "fail", format!("migrations behind: database at {name}, code expects {LATEST_MIGRATION}; run wrangler d1 migrations apply DB --remote{}", if production { " --env production" } else { "" })),
        Ok(None) => r.add("d1", "fail", "no migrations applied; run wrangler d1 migrations apply DB"),
        Err(e) => r.add("d1", "fail", format!("D1 query failed: {}", e.internal.unwrap_or_default())),
    }

    // KV round trip.
    let nonce = crate::domain::signature::base32(&random_bytes::<10>()?);
    let kv_status = match ctx.env.kv("CACHE") {
        Err(_) => ("fail", "no KV binding named CACHE".to_string()),
        Ok(kv) => match kv.put(&format!("diagnose:{nonce}"), &nonce) {
            Err(e) => ("fail", format!("KV put failed: {e}")),
            Ok(put) => match put.expiration_ttl(60).execute().await {
                Err(e) => ("fail", format!("KV put failed: {e}")),
                Ok(()) => match kv.get(&format!("diagnose:{nonce}")).text().await {
                    Ok(Some(v)) if v == nonce => ("pass", "write and read back".to_string()),
                    Ok(_) => ("fail", "KV read did not return what was written".to_string()),
                    Err(e) => ("fail", format!("KV get failed: {e}")),
                },
            },
        },
    };
    r.add("kv", kv_status.0, kv_status.1);

    // R2 round trip, then the public signed URL the way Kie would fetch it.
    let origin = ctx.public_origin(cfg);
    match ctx.env.bucket(FILES_BUCKET) {
        Err(_) => {
            r.add("r2", "fail", "no R2 binding named FILES");
            r.add("public input url", "skip", "needs R2");
        }
        Ok(bucket) => {
            let key = format!("in/diagnose-{nonce}.png");
            match bucket.put(&key, PROBE_PNG.to_vec()).execute().await {
                Err(e) => {
                    r.add("r2", "fail", format!("R2 put failed: {e}"));
                    r.add("public input url", "skip", "needs R2");
                }
                Ok(_) => {
                    r.add("r2", "pass", "write succeeded");
                    let url = crate::http::files::signed_url(&origin, &cfg.file_url_secret, &key, 600, now_ms());
                    let h = Headers::new();
                    let _ = h.set("User-Agent", USER_AGENT);
                    match fetch_with_timeout(&url, Method::Get, h, None, 10_000).await {
                        Transport::Response { status: 200, body } if body == PROBE_PNG => {
                            r.add("public input url", "pass", format!("an input image signed by this Worker was fetched back through {origin}/files/"))
                        }
                        Transport::Response { status, .. } => r.add("public input url", "fail", format!("fetching a signed input URL through {origin} answered HTTP {status}; Kie would fail the task with failCode 422")),
                        other => r.add("public input url", "fail", format!("could not fetch {origin}/files/…: {other:?}; Kie could not fetch inputs either")),
                    }
                    let _ = bucket.delete(&key).await;
                }
            }
        }
    }

    // PUBLIC_BASE_URL points at this very deployment (same secret => same environment).
    match &cfg.public_base_url {
        None => r.add("public base url", if production { "fail" } else { "skip" }, "PUBLIC_BASE_URL is not set: Kie cannot send callbacks, tasks complete by polling only"),
        Some(base) => {
            let probe = format!("{base}/api/health?probe={nonce}");
            let expected = crate::http::health::probe_signature(&cfg.file_url_secret, &nonce);
            let h = Headers::new();
            let _ = h.set("User-Agent", USER_AGENT);
            match fetch_with_timeout(&probe, Method::Get, h, None, 10_000).await {
                Transport::Response { body, status } => {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if v["probe"]["signature"].as_str() == Some(expected.as_str()) {
                        r.add("public base url", "pass", format!("{base} reaches this deployment ({})", cfg.environment));
                    } else {
                        r.add("public base url", "fail", format!("{base} answered HTTP {status} but is not this deployment/environment (different Worker or secrets); fix PUBLIC_BASE_URL for env {}", cfg.environment));
                    }
                }
                other => r.add("public base url", "fail", format!("{base} is not reachable: {other:?}")),
            }
            let https = base.starts_with("https://");
            r.add(
                "callback url",
                if https || !production { "pass" } else { "fail" },
                format!("Kie will call {base}/api/webhooks/kie-image?task=…&token=… {}", if https { "" } else { "(not https)" }),
            );
        }
    }

    // Kie key and balance (free call).
    let kie = KieClient { base: &cfg.kie_api_base, api_key: &cfg.kie_api_key, timeout_ms: 10_000, log: &ctx.log };
    match kie.credit().await {
        Ok(balance) => r.add("kie key", "pass", format!("key accepted by {}; account balance {balance} Kie credits", cfg.kie_api_base)),
        Err(why) => r.add("kie key", "fail", format!("{} refused or did not answer the free credit call: {why}", cfg.kie_api_base)),
    }

    // Cron.
    #[derive(Deserialize)]
    struct Run {
        finished_at: i64,
        summary: String,
    }
    let last = db.first::<Run>(db.stmt("SELECT finished_at, summary FROM cron_runs ORDER BY id DESC LIMIT 1", &[])?).await;
    match last {
        Ok(Some(run)) if now_ms() - run.finished_at < 5 * 60_000 => {
            r.add("cron", "pass", format!("last run {}s ago: {}", (now_ms() - run.finished_at) / 1000, run.summary))
        }
        Ok(Some(run)) => r.add("cron", "fail", format!("last run {} min ago; check the [triggers] crons of this environment", (now_ms() - run.finished_at) / 60_000)),
        Ok(None) => r.add("cron", "fail", "the scheduled job has never run in this environment"),
        Err(_) => r.add("cron", "fail", "could not read cron runs"),
    }

    let failed = r.0.iter().filter(|c| c["status"] == "fail").count();
    let status = if failed == 0 { "pass" } else { "fail" };
    ctx.log.info("diagnose", "diagnose report", json!({ "failed_checks": failed }));
    if ctx.query("format") == Some("text") {
        let mut text = format!("diagnose {} ({}, {})\n", status.to_uppercase(), cfg.environment, crate::http::health::COMMIT);
        for c in &r.0 {
            text.push_str(&format!("[{:4}] {:22} {}\n", c["status"].as_str().unwrap_or(""), c["name"].as_str().unwrap_or(""), c["hint"].as_str().unwrap_or("")));
        }
        let resp = Response::ok(text).map_err(|e| AppError::internal(e.to_string()))?;
        let _ = resp.headers().set("Content-Type", "text/plain; charset=utf-8");
        return Ok(resp);
    }
    json_response(200, &json!({ "status": status, "environment": cfg.environment, "version": crate::http::health::VERSION, "commit": crate::http::health::COMMIT, "checks": r.0 }))
}

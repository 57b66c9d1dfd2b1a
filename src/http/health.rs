//! `GET /api/health`: cheap, public, no secrets; says when the cron last ran,
//! so an outside uptime checker can alert when it stops. Also answers
//! diagnose's probe (`?probe=<nonce>`) with a signature only this deployment
//! can make.

use super::ctx::Ctx;
use super::json_response;
use super::request::Request;
use super::response::Response;
use crate::adapters::cache::Cache;
use crate::adapters::clock::now_ms;
use crate::adapters::files::Files;
use crate::adapters::settings;
use crate::adapters::store::ops;
use crate::build_info::{BUILT_AT, COMMIT, VERSION};
use crate::domain::error::AppResult;
use crate::domain::signature::probe_signature;
use crate::domain::time::rfc3339;
use serde_json::json;

/// A cron (every minute) that has not finished a run for this long has stopped.
const CRON_STALE_MS: i64 = 5 * 60_000;

/// Where diagnose keeps the nonce it asks the public URL to sign.
pub fn probe_cache_key(nonce: &str) -> String {
    format!("diagnose:{nonce}")
}

pub async fn get(ctx: &Ctx, _req: Request) -> AppResult<Response> {
    let config = settings::config(&ctx.env);
    let missing: Vec<String> = config.as_ref().err().map(|p| p.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();

    // One query: the last cron run doubles as the D1 check (a ping when the table is missing).
    let (d1_ok, last_cron) = match ctx.db() {
        Ok(db) => match ops::last_cron_run(&db).await {
            Ok(run) => (true, run.map(|r| r.finished_at)),
            Err(_) => (db.ping().await.is_ok(), None),
        },
        Err(_) => (false, None),
    };
    let cron_age_s = last_cron.map(|t| (now_ms() - t).max(0) / 1000);
    let cron_status = match cron_age_s {
        None => "never",
        Some(age) if age * 1000 > CRON_STALE_MS => "stale",
        Some(_) => "ok",
    };
    let cache = Cache::from_env(&ctx.env, &ctx.log).ok();
    let kv_ok = match &cache {
        Some(kv) => kv.get("health").await.is_ok(),
        None => false,
    };
    let r2_ok = match Files::from_env(&ctx.env, &ctx.log) {
        Ok(files) => files.head("health").await.is_ok(),
        Err(_) => false,
    };
    let status = if !d1_ok || !missing.is_empty() {
        "down"
    } else if !kv_ok || !r2_ok || cron_status == "stale" {
        "degraded"
    } else {
        "ok"
    };
    let mut body = json!({
        "status": status,
        "version": VERSION,
        "commit": COMMIT,
        "built_at": BUILT_AT,
        "environment": config.as_ref().map(|c| c.environment.clone()).unwrap_or_else(|_| "unknown".into()),
        "checks": {
            "d1": if d1_ok { "ok" } else { "fail" },
            "kv": if kv_ok { "ok" } else { "fail" },
            "r2": if r2_ok { "ok" } else { "fail" },
            "config": if missing.is_empty() { "ok" } else { "fail" },
        },
        "config_problems": missing,
        "cron": { "status": cron_status, "last_run_at": last_cron.map(rfc3339), "age_s": cron_age_s },
    });
    if let (Some(nonce), Ok(cfg)) = (ctx.query("probe"), &config) {
        if nonce.len() <= 64 && nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // Known only to the deployment whose diagnose wrote it into its own KV.
            let known = match &cache {
                Some(kv) => kv.get(&probe_cache_key(nonce)).await.ok().flatten().is_some(),
                None => false,
            };
            if let Some(o) = body.as_object_mut() {
                o.insert(
                    "probe".into(),
                    json!({ "nonce": nonce, "signature": probe_signature(&cfg.file_url_secret, nonce), "known": known }),
                );
            }
        }
    }
    json_response(if status == "down" { 503 } else { 200 }, &body)
}

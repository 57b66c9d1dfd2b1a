//! `GET /api/health`: cheap, public, no secrets. Also answers the diagnose
//! probe (`?probe=n`) with a signature only this deployment can make.

use super::{json_response, Ctx};
use crate::domain::error::AppResult;
use crate::domain::signature::file_signature;
use crate::pipeline::FILES_BUCKET;
use serde_json::json;
use worker::Response;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("BUILD_GIT_COMMIT");
pub const BUILT_AT: &str = env!("BUILD_TIME");

pub fn probe_signature(secret: &str, nonce: &str) -> String {
    file_signature(secret, &format!("probe:{nonce}"), 0)
}

pub async fn health(ctx: &Ctx) -> AppResult<Response> {
    let env = &ctx.env;
    let config = crate::edge::read_config(env);
    let missing: Vec<String> = config.as_ref().err().map(|p| p.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();

    let d1_ok = match ctx.db() {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    };
    let kv_ok = match env.kv("CACHE") {
        Ok(kv) => kv.get("health").text().await.is_ok(),
        Err(_) => false,
    };
    let r2_ok = match env.bucket(FILES_BUCKET) {
        Ok(b) => b.head("health").await.is_ok(),
        Err(_) => false,
    };
    let status = if !d1_ok || !missing.is_empty() {
        "down"
    } else if !kv_ok || !r2_ok {
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
    });
    if let (Some(nonce), Ok(cfg)) = (ctx.query("probe"), &config) {
        if nonce.len() <= 64 && nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // Known only to the deployment whose diagnose wrote it into its own KV.
            let known = match env.kv("CACHE") {
                Ok(kv) => kv.get(&format!("diagnose:{nonce}")).text().await.ok().flatten().is_some(),
                Err(_) => false,
            };
            if let Some(o) = body.as_object_mut() {
                o.insert("probe".into(), json!({ "nonce": nonce, "signature": probe_signature(&cfg.file_url_secret, nonce), "known": known }));
            }
        }
    }
    json_response(if status == "down" { 503 } else { 200 }, &body)
}

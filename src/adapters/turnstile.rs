//! Cloudflare Turnstile's siteverify: the server-side half of the human check
//! on a first sign-in (`TURNSTILE_VERIFY_URL` points tests at a stand-in).

use super::log::Log;
use super::outbound;
use crate::domain::config::TurnstileSettings;
use crate::domain::kie::Transport;
use crate::domain::turnstile::{parse_siteverify, siteverify_body, Verdict};
use serde_json::json;

const TIMEOUT_MS: u64 = 10_000;

/// Asks siteverify about a widget token; `Err` when it gave no answer.
pub async fn verify(settings: &TurnstileSettings, token: &str, remote_ip: Option<&str>, log: &Log) -> Result<Verdict, String> {
    let headers = outbound::headers();
    let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
    let body = siteverify_body(&settings.secret_key, token, remote_ip);
    let answer = match outbound::fetch(log, &settings.verify_url, "POST", headers, Some(&body), TIMEOUT_MS).await {
        Transport::Response { status, body } => parse_siteverify(status, &body),
        other => Err(format!("siteverify: {other}")),
    };
    let outcome = match &answer {
        Ok(Verdict::Passed) => json!("passed"),
        Ok(Verdict::Failed(codes)) => json!(codes),
        Err(why) => json!(why),
    };
    log.info("turnstile.verify", "human check answered", json!({ "turnstile_outcome": outcome }));
    answer
}

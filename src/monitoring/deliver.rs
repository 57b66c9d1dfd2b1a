//! Sending alert messages: the start of each alert, then its end, in order,
//! to the one configured receiver. A receiver that is down (or slow, or says
//! no) stops this run's deliveries; the next run tries again. The receiver's
//! URL is a secret: it is never logged, and errors are described without it.

use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::log::Log;
use crate::adapters::outbound;
use crate::adapters::store::monitoring as store;
use crate::domain::error::AppResult;
use crate::domain::kie::Transport;
use crate::domain::monitor::config::{AlertReceiver, MonitorConfig};
use crate::domain::monitor::notify::{accepted, render, Notice, Sender};
use serde_json::json;

/// How long one delivery may take.
const TIMEOUT_MS: u64 = 5_000;
/// How long a run holds an alert while sending its messages.
const LEASE_MS: i64 = 60_000;
/// At most this many messages per run.
const MAX_PER_RUN: u32 = 6;
/// Messages not delivered within a day (a receiver configured later, a long
/// outage) are not sent any more: the dashboard and the alerts API show them.
const MAX_AGE_MS: i64 = 86_400_000;

#[derive(Debug, Default)]
pub struct Delivered {
    pub sent: u32,
    /// Why the run stopped delivering, if it did.
    pub failed: Option<String>,
}

pub async fn pending(db: &Db, log: &Log, cfg: &MonitorConfig, sender: &Sender<'_>, now: i64) -> AppResult<Delivered> {
    let mut out = Delivered::default();
    let Some(receiver) = &cfg.receiver else { return Ok(out) };
    for candidate in store::pending_deliveries(db, now, MAX_AGE_MS, MAX_PER_RUN).await? {
        let Some(a) = store::claim_delivery(db, &candidate.id, now, LEASE_MS).await? else { continue };
        let mut messages = Vec::new();
        if a.start_sent_at.is_none() {
            messages.push(false);
        }
        if a.state == "resolved" && a.end_sent_at.is_none() {
            messages.push(true);
        }
        for end in messages {
            if out.sent >= MAX_PER_RUN {
                store::mark_failed(db, &a.id, "deferred to the next run").await?;
                return Ok(out);
            }
            let message = if end { a.resolved_message.as_deref().unwrap_or(&a.message) } else { &a.message };
            let notice = Notice {
                id: &a.id,
                condition: &a.condition,
                state: if end { "resolved" } else { "open" },
                started_at: a.started_at,
                resolved_at: if end { a.resolved_at } else { None },
                message,
            };
            let kind = if end { "end" } else { "start" };
            match send(log, receiver, sender, &notice).await {
                Ok(()) => {
                    store::mark_sent(db, &a.id, end, now_ms()).await?;
                    out.sent += 1;
                    log.info(
                        "alert.sent",
                        "alert message delivered",
                        json!({ "alert_id": a.id, "condition": a.condition, "message_kind": kind, "format": receiver.format.as_str() }),
                    );
                }
                Err(why) => {
                    store::mark_failed(db, &a.id, &why).await?;
                    log.warn(
                        "alert.send_failed",
                        "the alert receiver did not take the message; the next run tries again",
                        json!({ "alert_id": a.id, "condition": a.condition, "message_kind": kind, "format": receiver.format.as_str(),
                                "cause": why, "attempts": a.attempts + 1 }),
                    );
                    out.failed = Some(why);
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Sends one message; `Err` says why it did not arrive (never the URL).
pub async fn send(log: &Log, receiver: &AlertReceiver, sender: &Sender<'_>, notice: &Notice<'_>) -> Result<(), String> {
    let out = render(receiver.format, receiver.secret.as_deref(), sender, notice, now_ms());
    let headers = outbound::headers();
    let _ = headers.set("Content-Type", "application/json; charset=utf-8");
    for (name, value) in &out.headers {
        let _ = headers.set(name, value);
    }
    match outbound::fetch(log, &receiver.url, "POST", headers, Some(&out.body), TIMEOUT_MS).await {
        Transport::Response { status, body } => accepted(receiver.format, status, &body),
        Transport::TimedOut => Err("timeout".into()),
        Transport::Unreachable(_) => Err("unreachable".into()),
    }
}

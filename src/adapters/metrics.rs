//! The isolate's monitoring counters: every call to Kie (operation, result,
//! latency) and counted events (callbacks rejected by cause, D1 and R2 errors,
//! results not copied, browser reports). Noting one is synchronous and free;
//! the counters reach D1 after a response, in one batch (`http::handle` and
//! `Ctx::in_background` write them when [`due`]; the cron, diagnose and the
//! metrics endpoint always), so no request waits for it. Kie-call counters
//! are written at most every few seconds per isolate (a burst of requests
//! costs one write, not one each); events at once, the alerts read them.

use super::clock::now_ms;
use super::d1::Db;
use super::log::Log;
use super::store::monitoring;
use crate::domain::error::AppError;
use crate::domain::kie::Transport;
use crate::domain::monitor::alerts::{event, rejection_cause, storage_error_event};
use crate::domain::monitor::stats::{kie_result, Tally};
use serde_json::json;
use std::cell::{Cell, RefCell};

thread_local! {
    static TALLY: RefCell<Tally> = RefCell::new(Tally::default());
    static LAST_FLUSH: Cell<i64> = const { Cell::new(0) };
}

/// Kie-call counters wait at most this long in an isolate.
const FLUSH_EVERY_MS: i64 = 5_000;

/// Counts one call to Kie.
pub fn kie_call(op: &str, t: &Transport, kie_code: Option<i64>, latency_ms: i64) {
    let status = match t {
        Transport::Response { status, .. } => Some(*status),
        _ => None,
    };
    let result = kie_result(status, kie_code, matches!(t, Transport::TimedOut));
    TALLY.with(|c| c.borrow_mut().kie_call(now_ms(), op, &result, latency_ms));
}

/// Counts one event (`event::COPY_RETRY`, `event::CLIENT_ERROR`…).
pub fn event(kind: &str) {
    TALLY.with(|c| c.borrow_mut().event(now_ms(), kind));
}

/// Counts a callback answered 401, by cause, and hands the error back.
pub fn callback_rejected(e: AppError) -> AppError {
    event(&format!("{}{}", event::CALLBACK_REJECTED, rejection_cause(e.internal.as_deref())));
    e
}

/// Counts a D1 or R2 error (other errors are not counted).
pub fn note_error(e: &AppError) {
    if let Some(kind) = storage_error_event(e.internal.as_deref()) {
        event(kind);
    }
}

/// Whether the counters should be written now: an event is waiting, or Kie
/// calls have waited long enough.
pub fn due() -> bool {
    let last = LAST_FLUSH.with(Cell::get);
    TALLY.with(|c| {
        let t = c.borrow();
        !t.is_empty() && (t.has_events() || now_ms() - last >= FLUSH_EVERY_MS)
    })
}

/// Writes the counters to D1; what could not be written is kept for the next
/// flush (bounded, see [`Tally`]) and the failure logged.
pub async fn flush(db: &Db, log: &Log) {
    let tally = TALLY.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if tally.is_empty() {
        return;
    }
    LAST_FLUSH.with(|l| l.set(now_ms()));
    if let Err(e) = monitoring::add_tally(db, &tally).await {
        log.warn(
            "metrics.flush_failed",
            "monitoring counters could not be written; kept for the next try",
            json!({ "counters": tally.len(), "cause": e.internal }),
        );
        TALLY.with(|c| c.borrow_mut().merge(tally));
    }
}

//! JSON log lines for `wrangler tail`: one per request plus one per notable
//! event, all carrying the request id and, once known, the task and Kie ids.
//! Values that could be secrets are never passed in here.
//!
//! The log is also the invocation's meter for Cloudflare's per-invocation
//! limits, which local workerd does not enforce: subrequests (every fetch and
//! every D1, KV and R2 call) are spent against a budget and refused past it,
//! outbound connections are held to at most six at once, and the lines that
//! close an invocation report both, with the wasm linear memory size.

use super::clock::now_ms;
use crate::domain::error::{AppError, AppResult};
use crate::domain::time::rfc3339;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

#[derive(Default)]
struct State {
    request_id: String,
    route: String,
    /// Correlation fields copied into every line: user_id, task_id, provider_task_id.
    context: Map<String, Value>,
    d1_queries: u32,
    d1_rows_read: u64,
    d1_rows_written: u64,
    kie_calls: u32,
    /// Platform calls so far (fetches and binding calls) and how many are allowed.
    subrequests: u32,
    subrequest_budget: u32,
    open_connections: u32,
    peak_connections: u32,
}

/// Cloudflare's limit on simultaneous outbound connections per invocation.
pub const MAX_CONNECTIONS: u32 = 6;
/// The Free plan's subrequests per invocation, until the configuration says otherwise.
pub const DEFAULT_SUBREQUEST_BUDGET: u32 = 50;

/// The size of the wasm linear memory now (it only grows).
pub fn wasm_memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65_536
}

/// One open outbound connection; closed when dropped.
pub struct Connection(Log);

impl Drop for Connection {
    fn drop(&mut self) {
        let mut s = (self.0).0.borrow_mut();
        s.open_connections = s.open_connections.saturating_sub(1);
    }
}

/// A request's (or a cron run's) logger. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<State>>);

fn emit(level: Level, line: &Value) {
    let text = line.to_string();
    match level {
        Level::Error => worker::console_error!("{}", text),
        Level::Warn => worker::console_warn!("{}", text),
        Level::Info => worker::console_log!("{}", text),
    }
}

impl Log {
    pub fn new(request_id: &str, route: &str) -> Log {
        let log = Log::default();
        {
            let mut s = log.0.borrow_mut();
            s.request_id = request_id.to_string();
            s.route = route.to_string();
            s.subrequest_budget = DEFAULT_SUBREQUEST_BUDGET;
        }
        log
    }

    pub fn set_subrequest_budget(&self, budget: u32) {
        self.0.borrow_mut().subrequest_budget = budget;
    }

    /// Spends one subrequest, or refuses when the invocation's budget is spent
    /// (on Cloudflare the call would throw "Too many subrequests").
    pub fn spend_subrequest(&self, what: &str) -> AppResult<()> {
        let mut s = self.0.borrow_mut();
        if s.subrequests >= s.subrequest_budget {
            return Err(AppError::internal(format!("subrequest budget of {} spent before {what}", s.subrequest_budget)));
        }
        s.subrequests += 1;
        Ok(())
    }

    pub fn subrequests_left(&self) -> u32 {
        let s = self.0.borrow();
        s.subrequest_budget.saturating_sub(s.subrequests)
    }

    /// Opens one outbound connection, waiting while six are open.
    pub async fn connection(&self) -> Connection {
        loop {
            {
                let mut s = self.0.borrow_mut();
                if s.open_connections < MAX_CONNECTIONS {
                    s.open_connections += 1;
                    s.peak_connections = s.peak_connections.max(s.open_connections);
                    return Connection(self.clone());
                }
            }
            worker::Delay::from(std::time::Duration::from_millis(5)).await;
        }
    }

    pub fn set_route(&self, route: &str) {
        self.0.borrow_mut().route = route.to_string();
    }

    /// Remembers a correlation field (user_id, task_id, provider_task_id).
    pub fn set(&self, key: &str, value: &str) {
        self.0.borrow_mut().context.insert(key.to_string(), json!(value));
    }

    pub fn count_d1(&self, rows_read: u64, rows_written: u64) {
        let mut s = self.0.borrow_mut();
        s.d1_queries += 1;
        s.d1_rows_read += rows_read;
        s.d1_rows_written += rows_written;
    }

    pub fn count_kie_call(&self) {
        self.0.borrow_mut().kie_calls += 1;
    }

    fn base(&self, level: Level, msg: &str) -> Map<String, Value> {
        let s = self.0.borrow();
        let mut line = Map::new();
        line.insert("ts".into(), json!(rfc3339(now_ms())));
        line.insert("level".into(), json!(level.as_str()));
        line.insert("msg".into(), json!(msg));
        line.insert("request_id".into(), json!(s.request_id));
        line.insert("route".into(), json!(s.route));
        for (k, v) in &s.context {
            line.insert(k.clone(), v.clone());
        }
        line
    }

    /// One notable event: `event` is a stable name (`kie.call`, `task.state`…).
    pub fn event(&self, level: Level, event: &str, msg: &str, fields: Value) {
        let mut line = self.base(level, msg);
        line.insert("event".into(), json!(event));
        if let Value::Object(extra) = fields {
            for (k, v) in extra {
                line.insert(k, v);
            }
        }
        emit(level, &Value::Object(line));
    }

    pub fn info(&self, event: &str, msg: &str, fields: Value) {
        self.event(Level::Info, event, msg, fields)
    }
    pub fn warn(&self, event: &str, msg: &str, fields: Value) {
        self.event(Level::Warn, event, msg, fields)
    }
    pub fn error(&self, event: &str, msg: &str, fields: Value) {
        self.event(Level::Error, event, msg, fields)
    }

    /// The one line per request, written when the response is ready.
    pub fn request(&self, method: &str, path: &str, status: u16, duration_ms: i64, error_code: Option<&str>) {
        let level = match status {
            500.. => Level::Error,
            400.. => Level::Warn,
            _ => Level::Info,
        };
        let mut line = self.base(level, "request");
        let s = self.0.borrow();
        line.insert("event".into(), json!("http.request"));
        line.insert("method".into(), json!(method));
        line.insert("path".into(), json!(path));
        line.insert("status".into(), json!(status));
        line.insert("duration_ms".into(), json!(duration_ms));
        line.insert("error_code".into(), json!(error_code));
        line.insert("d1_queries".into(), json!(s.d1_queries));
        line.insert("d1_rows_read".into(), json!(s.d1_rows_read));
        line.insert("d1_rows_written".into(), json!(s.d1_rows_written));
        line.insert("kie_calls".into(), json!(s.kie_calls));
        line.insert("subrequests".into(), json!(s.subrequests));
        line.insert("connections_peak".into(), json!(s.peak_connections));
        line.insert("wasm_memory_bytes".into(), json!(wasm_memory_bytes()));
        drop(s);
        emit(level, &Value::Object(line));
    }

    /// The cost so far as log fields, for lines written after the request line
    /// (background work, cron runs).
    pub fn cost_fields(&self) -> Value {
        let s = self.0.borrow();
        json!({ "d1_queries": s.d1_queries, "d1_rows_read": s.d1_rows_read, "d1_rows_written": s.d1_rows_written,
                "kie_calls": s.kie_calls, "subrequests": s.subrequests, "connections_peak": s.peak_connections,
                "wasm_memory_bytes": wasm_memory_bytes() })
    }
}

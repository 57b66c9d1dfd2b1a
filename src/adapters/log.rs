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
use serde_json::{json, Value};
use std::cell::RefCell;
use std::fmt::Write;
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
    context: Vec<(String, String)>,
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

// A line crosses to the console in one call (web-sys' `console::log_1`
// takes a `JsValue`, one more call to make it).
#[wasm_bindgen::prelude::wasm_bindgen(js_namespace = console)]
extern "C" {
    #[wasm_bindgen(js_name = log)]
    fn console_log(line: &str);
    #[wasm_bindgen(js_name = warn)]
    fn console_warn(line: &str);
    #[wasm_bindgen(js_name = error)]
    fn console_error(line: &str);
}

/// One JSON object written field by field straight into a string (no map to
/// build, sort and serialise: this runs for every line of every request).
struct Line(String);

impl Line {
    fn new() -> Line {
        let mut out = String::with_capacity(384);
        out.push('{');
        Line(out)
    }
    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.text(key);
        self.0.push(':');
    }
    /// A JSON string, escaped as serde_json escapes it (most need nothing
    /// escaped and are copied as they are).
    fn text(&mut self, value: &str) {
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.0.push('"');
            self.0.push_str(value);
            self.0.push('"');
            return;
        }
        match serde_json::to_string(value) {
            Ok(quoted) => self.0.push_str(&quoted),
            Err(_) => self.0.push_str("\"\""),
        }
    }
    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.text(value);
    }
    fn num(&mut self, key: &str, value: impl std::fmt::Display) {
        self.key(key);
        let _ = write!(self.0, "{value}");
    }
    fn value(&mut self, key: &str, value: &Value) {
        self.key(key);
        self.0.push_str(&value.to_string());
    }
    fn emit(mut self, level: Level) {
        self.0.push('}');
        match level {
            Level::Error => console_error(&self.0),
            Level::Warn => console_warn(&self.0),
            Level::Info => console_log(&self.0),
        }
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
        let mut s = self.0.borrow_mut();
        match s.context.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => s.context.push((key.to_string(), value.to_string())),
        }
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

    /// The fields every line carries; correlation fields the line sets itself are left to it.
    fn base(&self, level: Level, msg: &str, event: &str, own: Option<&serde_json::Map<String, Value>>) -> Line {
        let s = self.0.borrow();
        let mut line = Line::new();
        line.str("ts", &rfc3339(now_ms()));
        line.str("level", level.as_str());
        line.str("msg", msg);
        line.str("event", event);
        line.str("request_id", &s.request_id);
        line.str("route", &s.route);
        for (k, v) in &s.context {
            if !own.is_some_and(|o| o.contains_key(k)) {
                line.str(k, v);
            }
        }
        line
    }

    /// One notable event: `event` is a stable name (`kie.call`, `task.state`…).
    pub fn event(&self, level: Level, event: &str, msg: &str, fields: Value) {
        let own = fields.as_object();
        let mut line = self.base(level, msg, event, own);
        for (k, v) in own.into_iter().flatten() {
            line.value(k, v);
        }
        line.emit(level);
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
        let mut line = self.base(level, "request", "http.request", None);
        let s = self.0.borrow();
        line.str("method", method);
        line.str("path", path);
        line.num("status", status);
        line.num("duration_ms", duration_ms);
        match error_code {
            Some(code) => line.str("error_code", code),
            None => line.value("error_code", &Value::Null),
        }
        line.num("d1_queries", s.d1_queries);
        line.num("d1_rows_read", s.d1_rows_read);
        line.num("d1_rows_written", s.d1_rows_written);
        line.num("kie_calls", s.kie_calls);
        line.num("subrequests", s.subrequests);
        line.num("connections_peak", s.peak_connections);
        line.num("wasm_memory_bytes", wasm_memory_bytes());
        drop(s);
        line.emit(level);
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

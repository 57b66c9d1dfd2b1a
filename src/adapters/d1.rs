//! D1, spoken to directly: statements are prepared and bound on the
//! JavaScript side, and each result crosses into wasm once, as one JSON
//! string, instead of one crossing per row and field. Every query is counted
//! (queries, rows read and written, subrequests) for the request's log line. Numbers are
//! bound as f64 (D1 rejects JS BigInt).

use super::log::Log;
use crate::domain::error::{AppError, AppResult};
use serde::de::DeserializeOwned;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{Array, Promise, Reflect, JSON};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::types::{D1Database as D1Sys, D1PreparedStatement};

pub fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}
pub fn num(v: i64) -> JsValue {
    JsValue::from_f64(v as f64)
}
pub fn opt_text(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

/// A prepared and bound statement.
pub struct Stmt(D1PreparedStatement);

#[derive(Clone)]
pub struct Db {
    d1: Rc<D1Sys>,
    log: Log,
}

/// The message of a rejected D1 call (never includes bound values).
fn d1_error(what: &str, e: JsValue) -> AppError {
    let message = e
        .dyn_ref::<worker::js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into());
    AppError::internal(format!("d1 {what}: {message}"))
}

fn field(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// A statement's (rows read, rows written, rows changed) from its `meta`.
fn meta(result: &JsValue) -> (u64, u64, usize) {
    let meta = field(result, "meta");
    let n = |name: &str| field(&meta, name).as_f64().unwrap_or(0.0);
    (n("rows_read") as u64, n("rows_written") as u64, n("changes") as usize)
}

impl Db {
    pub fn new(d1: worker::D1Database, log: Log) -> Db {
        let raw: JsValue = d1.into();
        Db { d1: Rc::new(raw.unchecked_into()), log }
    }

    pub fn stmt(&self, sql: &str, args: &[JsValue]) -> AppResult<Stmt> {
        let prepared = self.d1.prepare(sql).map_err(|e| d1_error("prepare", e))?;
        let bound = prepared.bind(args.iter().collect::<Array>()).map_err(|e| d1_error("bind", e))?;
        Ok(Stmt(bound))
    }

    /// One D1 call: a subrequest against the invocation's budget.
    async fn settle(&self, what: &str, promise: Result<Promise, JsValue>) -> AppResult<JsValue> {
        self.log.spend_subrequest("d1")?;
        let promise = promise.map_err(|e| d1_error(what, e))?;
        JsFuture::from(promise).await.map_err(|e| d1_error(what, e))
    }

    fn count(&self, result: &JsValue) -> usize {
        let (read, written, changes) = meta(result);
        self.log.count_d1(read, written);
        changes
    }

    pub async fn all<T: DeserializeOwned>(&self, stmt: Stmt) -> AppResult<Vec<T>> {
        let result = self.settle("query", stmt.0.all()).await?;
        self.count(&result);
        let rows = field(&result, "results");
        if rows.is_undefined() || rows.is_null() {
            return Ok(Vec::new());
        }
        let json: String = JSON::stringify(&rows).map_err(|e| d1_error("rows", e))?.into();
        serde_json::from_str(&json).map_err(|e| AppError::internal(format!("d1 decode: {e}")))
    }

    pub async fn first<T: DeserializeOwned>(&self, stmt: Stmt) -> AppResult<Option<T>> {
        Ok(self.all::<T>(stmt).await?.into_iter().next())
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn run(&self, stmt: Stmt) -> AppResult<usize> {
        let result = self.settle("write", stmt.0.run()).await?;
        Ok(self.count(&result))
    }

    /// Runs statements as one transaction; returns each one's changed-row count.
    pub async fn batch(&self, stmts: Vec<Stmt>) -> AppResult<Vec<usize>> {
        let list: Array = stmts.into_iter().map(|s| JsValue::from(s.0)).collect();
        let results = self.settle("batch", self.d1.batch(list)).await?;
        let results: Array = results.unchecked_into();
        let metas: Vec<_> = results.iter().map(|r| meta(&r)).collect();
        self.log.count_d1(metas.iter().map(|m| m.0).sum(), metas.iter().map(|m| m.1).sum());
        Ok(metas.into_iter().map(|m| m.2).collect())
    }

    /// The cheapest round trip, for health checks.
    pub async fn ping(&self) -> AppResult<()> {
        self.all::<serde_json::Value>(self.stmt("SELECT 1 AS one", &[])?).await.map(|_| ())
    }
}

//! D1, spoken to directly through `d1.mjs`: a statement is prepared and
//! bound in one call, and each result crosses into wasm once, as one string
//! (its counts and its rows as JSON), instead of one crossing per row, field
//! and count. Every round trip is counted (queries, rows read and written,
//! subrequests) for the request's log line. Numbers are bound as f64 (D1
//! rejects JS BigInt).

use super::js_message;
use super::log::Log;
use crate::domain::error::{AppError, AppResult};
use serde::de::DeserializeOwned;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{Promise, Reflect};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::types::{D1Database as D1Sys, D1PreparedStatement};
use worker::Env;

#[wasm_bindgen(module = "/src/adapters/d1.mjs")]
extern "C" {
    #[wasm_bindgen(catch)]
    fn d1_statement(db: &D1Sys, sql: &str, args: Vec<JsValue>) -> Result<D1PreparedStatement, JsValue>;
    fn d1_all(statement: &D1PreparedStatement) -> Promise;
    fn d1_run(statement: &D1PreparedStatement) -> Promise;
    fn d1_batch(db: &D1Sys, statements: Vec<D1PreparedStatement>) -> Promise;
}

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
    AppError::internal(format!("d1 {what}: {}", js_message(&e)))
}

/// A statement's (rows read, rows written, rows changed) from its count line.
fn counts(line: &str) -> (u64, u64, usize) {
    let mut n = line.split(' ').map(|v| v.parse::<u64>().unwrap_or(0));
    let (read, written, changes) = (n.next().unwrap_or(0), n.next().unwrap_or(0), n.next().unwrap_or(0));
    (read, written, changes as usize)
}

impl Db {
    /// The `DB` binding. workers-rs' `Env::d1` also checks the binding's
    /// constructor name, four more JS calls on every request.
    pub fn from_env(env: &Env, log: &Log) -> AppResult<Db> {
        let binding = Reflect::get(env, &JsValue::from_str("DB"))
            .ok()
            .filter(JsValue::is_object)
            .ok_or_else(|| AppError::internal("no D1 binding named DB"))?;
        Ok(Db { d1: Rc::new(binding.unchecked_into()), log: log.clone() })
    }

    pub fn stmt(&self, sql: &str, args: &[JsValue]) -> AppResult<Stmt> {
        d1_statement(&self.d1, sql, args.to_vec()).map(Stmt).map_err(|e| d1_error("statement", e))
    }

    /// One D1 call: a subrequest against the invocation's budget. Its answer
    /// is text (see `d1.mjs`).
    async fn settle(&self, what: &str, promise: Promise) -> AppResult<String> {
        self.log.spend_subrequest("d1")?;
        let answer = JsFuture::from(promise).await.map_err(|e| d1_error(what, e))?;
        answer.as_string().ok_or_else(|| AppError::internal(format!("d1 {what}: no answer")))
    }

    fn count(&self, line: &str) -> usize {
        let (read, written, changes) = counts(line);
        self.log.count_d1(read, written);
        changes
    }

    pub async fn all<T: DeserializeOwned>(&self, stmt: Stmt) -> AppResult<Vec<T>> {
        let answer = self.settle("query", d1_all(&stmt.0)).await?;
        let (line, rows) = answer.split_once('\n').unwrap_or((&answer, "[]"));
        self.count(line);
        serde_json::from_str(rows).map_err(|e| AppError::internal(format!("d1 decode: {e}")))
    }

    pub async fn first<T: DeserializeOwned>(&self, stmt: Stmt) -> AppResult<Option<T>> {
        Ok(self.all::<T>(stmt).await?.into_iter().next())
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn run(&self, stmt: Stmt) -> AppResult<usize> {
        let answer = self.settle("write", d1_run(&stmt.0)).await?;
        Ok(self.count(&answer))
    }

    /// Runs statements as one transaction; returns each one's changed-row count.
    pub async fn batch(&self, stmts: Vec<Stmt>) -> AppResult<Vec<usize>> {
        let answer = self.settle("batch", d1_batch(&self.d1, stmts.into_iter().map(|s| s.0).collect())).await?;
        let each: Vec<_> = answer.lines().map(counts).collect();
        self.log.count_d1(each.iter().map(|c| c.0).sum(), each.iter().map(|c| c.1).sum());
        Ok(each.into_iter().map(|c| c.2).collect())
    }

    /// The cheapest round trip, for health checks.
    pub async fn ping(&self) -> AppResult<()> {
        self.all::<serde_json::Value>(self.stmt("SELECT 1 AS one", &[])?).await.map(|_| ())
    }
}

//! A thin wrapper over D1 that counts queries and rows for the request log and
//! turns D1 failures into the one error type. Numbers are bound as f64 (D1
//! rejects JS BigInt).

use super::log::Log;
use crate::domain::error::{AppError, AppResult};
use serde::de::DeserializeOwned;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

pub fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}
pub fn num(v: i64) -> JsValue {
    JsValue::from_f64(v as f64)
}
pub fn opt_text(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

#[derive(Clone)]
pub struct Db {
    d1: Rc<D1Database>,
    log: Log,
}

fn d1_error(what: &str, e: worker::Error) -> AppError {
    AppError::internal(format!("d1 {what}: {e}"))
}

impl Db {
    pub fn new(d1: D1Database, log: Log) -> Db {
        Db { d1: Rc::new(d1), log }
    }

    pub fn stmt(&self, sql: &str, args: &[JsValue]) -> AppResult<D1PreparedStatement> {
        self.d1.prepare(sql).bind(args).map_err(|e| d1_error("bind", e))
    }

    /// (rows read, rows written, rows changed) of one statement.
    fn meta(result: &D1Result) -> (u64, u64, usize) {
        result
            .meta()
            .ok()
            .flatten()
            .map(|m| (m.rows_read.unwrap_or(0) as u64, m.rows_written.unwrap_or(0) as u64, m.changes.unwrap_or(0)))
            .unwrap_or((0, 0, 0))
    }

    pub async fn all<T: DeserializeOwned>(&self, stmt: D1PreparedStatement) -> AppResult<Vec<T>> {
        let result = stmt.all().await.map_err(|e| d1_error("query", e))?;
        let (read, written, _) = Self::meta(&result);
        self.log.count_d1(read, written);
        result.results::<T>().map_err(|e| AppError::internal(format!("d1 decode: {e}")))
    }

    pub async fn first<T: DeserializeOwned>(&self, stmt: D1PreparedStatement) -> AppResult<Option<T>> {
        Ok(self.all::<T>(stmt).await?.into_iter().next())
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn run(&self, stmt: D1PreparedStatement) -> AppResult<usize> {
        let result = stmt.run().await.map_err(|e| d1_error("write", e))?;
        let (read, written, changes) = Self::meta(&result);
        self.log.count_d1(read, written);
        Ok(changes)
    }

    /// Runs statements as one transaction; returns each one's changed-row count.
    pub async fn batch(&self, stmts: Vec<D1PreparedStatement>) -> AppResult<Vec<usize>> {
        let results = self.d1.batch(stmts).await.map_err(|e| d1_error("batch", e))?;
        let metas: Vec<_> = results.iter().map(Self::meta).collect();
        self.log.count_d1(metas.iter().map(|m| m.0).sum(), metas.iter().map(|m| m.1).sum());
        Ok(metas.into_iter().map(|m| m.2).collect())
    }

    /// The cheapest round trip, for health checks.
    pub async fn ping(&self) -> AppResult<()> {
        let stmt = self.stmt("SELECT 1 AS one", &[])?;
        self.all::<serde_json::Value>(stmt).await.map(|_| ())
    }
}

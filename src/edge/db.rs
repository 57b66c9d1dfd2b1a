//! A thin wrapper over D1 that counts queries and rows for the request log and
//! turns D1 failures into the one error type. Numbers are bound as f64 (D1
//! rejects JS BigInt).

use super::log::Log;
use crate::domain::error::{AppError, AppResult};
use serde::de::DeserializeOwned;
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
    d1: std::rc::Rc<D1Database>,
    log: Log,
}

/// A D1 failure: the message is kept for the log; `constraint` tells whether a
/// UNIQUE/CHECK constraint refused the write (a lost race, not a fault).
#[derive(Debug)]
pub struct DbError {
    pub message: String,
    pub constraint: bool,
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        AppError::internal(format!("d1: {}", e.message))
    }
}

fn db_error(e: worker::Error) -> DbError {
    let message = e.to_string();
    let constraint = message.contains("constraint failed");
    DbError { message, constraint }
}

impl Db {
    pub fn new(d1: D1Database, log: Log) -> Db {
        Db { d1: std::rc::Rc::new(d1), log }
    }

    pub fn stmt(&self, sql: &str, args: &[JsValue]) -> AppResult<D1PreparedStatement> {
        self.d1
            .prepare(sql)
            .bind(args)
            .map_err(|e| AppError::internal(format!("d1 bind: {e}")))
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

    /// Counts one round trip for the log; returns the changed-row count.
    fn count(&self, result: &D1Result) -> usize {
        let (read, written, changes) = Self::meta(result);
        self.log.count_d1(read, written);
        changes
    }

    pub async fn all<T: DeserializeOwned>(&self, stmt: D1PreparedStatement) -> AppResult<Vec<T>> {
        let result = stmt.all().await.map_err(db_error)?;
        self.count(&result);
        result.results::<T>().map_err(|e| AppError::internal(format!("d1 decode: {e}")))
    }

    pub async fn first<T: DeserializeOwned>(&self, stmt: D1PreparedStatement) -> AppResult<Option<T>> {
        Ok(self.all::<T>(stmt).await?.into_iter().next())
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn run(&self, stmt: D1PreparedStatement) -> AppResult<usize> {
        Ok(self.try_run(stmt).await?)
    }

    pub async fn try_run(&self, stmt: D1PreparedStatement) -> Result<usize, DbError> {
        let result = stmt.run().await.map_err(db_error)?;
        Ok(self.count(&result))
    }

    /// Runs statements as one transaction; returns each one's changed-row count.
    pub async fn batch(&self, stmts: Vec<D1PreparedStatement>) -> Result<Vec<usize>, DbError> {
        let results = self.d1.batch(stmts).await.map_err(db_error)?;
        let metas: Vec<_> = results.iter().map(Self::meta).collect();
        self.log.count_d1(metas.iter().map(|m| m.0).sum(), metas.iter().map(|m| m.1).sum());
        Ok(metas.into_iter().map(|m| m.2).collect())
    }

    /// Runs a raw statement for health checks.
    pub async fn ping(&self) -> AppResult<()> {
        let stmt = self.stmt("SELECT 1 AS one", &[])?;
        self.all::<serde_json::Value>(stmt).await.map(|_| ())
    }
}

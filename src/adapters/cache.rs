//! KV, a cache only (eventually consistent, ≥ 60 s TTLs): never the state of
//! record. Diagnose keeps its probe nonces here, and the monitoring whether it
//! told someone that D1 cannot be read (D1 itself cannot hold that). Every call
//! is a subrequest and, while it runs, a connection.

use super::log::Log;
use crate::domain::error::{AppError, AppResult};
use worker::{kv::KvStore, Env};

pub const BINDING: &str = "CACHE";

pub struct Cache {
    kv: KvStore,
    log: Log,
}

fn kv_error(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("kv {what}: {e}"))
}

impl Cache {
    pub fn from_env(env: &Env, log: &Log) -> AppResult<Cache> {
        env.kv(BINDING).map(|kv| Cache { kv, log: log.clone() }).map_err(|e| kv_error("binding", e))
    }

    pub async fn put(&self, key: &str, value: &str, ttl_s: u64) -> AppResult<()> {
        self.log.spend_subrequest("kv put")?;
        let _connection = self.log.connection().await;
        self.kv
            .put_bytes(key, value.as_bytes())
            .map_err(|e| kv_error("put", e))?
            .expiration_ttl(ttl_s)
            .execute()
            .await
            .map_err(|e| kv_error("put", e))
    }

    pub async fn get(&self, key: &str) -> AppResult<Option<String>> {
        self.log.spend_subrequest("kv get")?;
        let _connection = self.log.connection().await;
        self.kv.get(key).text().await.map_err(|e| kv_error("get", e))
    }

    pub async fn delete(&self, key: &str) -> AppResult<()> {
        self.log.spend_subrequest("kv delete")?;
        let _connection = self.log.connection().await;
        self.kv.delete(key).await.map_err(|e| kv_error("delete", e))
    }
}

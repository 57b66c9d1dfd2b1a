//! Adapters to the platform: D1, the Kie HTTP API, and the log.

pub mod db;
pub mod kie_client;
pub mod log;
pub mod store;

use crate::domain::config::{Config, ConfigProblem};

/// Reads one setting: a secret, else a var; `None` when absent.
pub fn setting(env: &worker::Env, name: &str) -> Option<String> {
    env.secret(name).map(|s| s.to_string()).ok().or_else(|| env.var(name).map(|v| v.to_string()).ok())
}

/// The typed configuration of this deployment, or every problem with it.
pub fn read_config(env: &worker::Env) -> Result<Config, Vec<ConfigProblem>> {
    Config::load(&|name| setting(env, name))
}

//! Wrangler vars and secrets, read into the typed [`Config`].

use crate::domain::config::{Config, ConfigProblem};
use worker::Env;

/// Reads one setting: a secret, else a var; `None` when absent.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name).map(|s| s.to_string()).ok().or_else(|| env.var(name).map(|v| v.to_string()).ok())
}

/// The typed configuration of this deployment, or every problem with it.
pub fn read_config(env: &Env) -> Result<Config, Vec<ConfigProblem>> {
    Config::load(&|name| setting(env, name))
}

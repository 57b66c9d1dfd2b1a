//! Wrangler vars and secrets, read into the typed [`Config`].
//!
//! Bindings cannot change while an isolate lives (a new value is a new
//! deployment, hence new isolates), so a good configuration is read once per
//! isolate, not on every request; a bad one is read again each time, so the
//! error always names what is wrong now.

use crate::domain::config::{Config, ConfigProblem};
use std::cell::OnceCell;
use std::rc::Rc;
use worker::Env;

thread_local! {
    static CONFIG: OnceCell<Rc<Config>> = const { OnceCell::new() };
}

/// Reads one setting: a secret, else a var; `None` when absent.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name).map(|s| s.to_string()).ok().or_else(|| env.var(name).map(|v| v.to_string()).ok())
}

/// The typed configuration of this deployment, read afresh, or every problem with it.
pub fn read_config(env: &Env) -> Result<Config, Vec<ConfigProblem>> {
    Config::load(&|name| setting(env, name))
}

/// The configuration, read once per isolate.
pub fn config(env: &Env) -> Result<Rc<Config>, Vec<ConfigProblem>> {
    if let Some(cfg) = CONFIG.with(|c| c.get().cloned()) {
        return Ok(cfg);
    }
    let cfg = Rc::new(read_config(env)?);
    CONFIG.with(|c| c.set(cfg.clone()).ok());
    Ok(cfg)
}

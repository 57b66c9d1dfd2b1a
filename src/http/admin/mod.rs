//! `/api/admin/*`: the operator's API (users, credits, keys, tasks, recheck,
//! audit) and the diagnose report. Opened only by the `ADMIN_TOKEN` secret.

pub mod audit;
pub mod diagnose;
pub mod monitoring;
pub mod orders;
pub mod tasks;
pub mod users;

use super::auth;
use super::ctx::{config_error, Ctx};
use super::request::Request;
use crate::adapters::d1::Db;
use crate::adapters::settings::setting;
use crate::domain::config::{Config, ConfigProblem};
use crate::domain::error::{AppError, AppResult};
use serde_json::{json, Value};
use std::rc::Rc;

const MAX_ADMIN_BODY: u64 = 16 * 1024;
const MAX_CREDITS: i64 = 1_000_000_000;

/// The operator's session: configuration and database, once the token checked out.
async fn open(ctx: &Ctx, req: &Request) -> AppResult<(Rc<Config>, Db)> {
    let cfg = ctx.config()?;
    auth::admin(ctx, req, &cfg.admin_token).await?;
    Ok((cfg, ctx.db()?))
}

/// Checks the operator token only: what diagnose and the dashboard's data
/// need, so they still answer when other settings are broken.
async fn operator(ctx: &Ctx, req: &Request) -> AppResult<()> {
    let admin_token = setting(&ctx.env, "ADMIN_TOKEN")
        .ok_or_else(|| config_error(&[ConfigProblem { name: "ADMIN_TOKEN".into(), problem: "missing".into() }]))?;
    auth::admin(ctx, req, admin_token.trim()).await
}

/// The path's `:id`, parsed; anything else is 404.
fn path_id<T>(ctx: &Ctx, parse: fn(&str) -> Option<T>) -> AppResult<T> {
    parse(ctx.param("id")).ok_or_else(AppError::not_found)
}

fn credits_field(body: &Value, name: &str, allow_negative: bool) -> AppResult<i64> {
    let v = body.get(name).ok_or_else(|| AppError::validation(name, format!("'{name}' is required.")))?;
    let n = v
        .as_i64()
        .filter(|_| v.is_i64() || v.is_u64())
        .ok_or_else(|| AppError::invalid_request(format!("'{name}' must be a whole number.")).with_details(json!({ "field": name })))?;
    if n.abs() > MAX_CREDITS || (!allow_negative && n < 0) {
        let min = if allow_negative { -MAX_CREDITS } else { 0 };
        return Err(AppError::validation(name, format!("'{name}' must be between {min} and {MAX_CREDITS}.")));
    }
    Ok(n)
}

fn text_field(body: &Value, name: &str, max: usize) -> AppResult<String> {
    let s = match body.get(name) {
        Some(Value::String(s)) => s.trim().to_string(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(AppError::invalid_request(format!("'{name}' must be a string.")).with_details(json!({ "field": name }))),
    };
    if s.is_empty() || s.chars().count() > max {
        return Err(AppError::validation(name, format!("'{name}' must be 1 to {max} characters.")));
    }
    Ok(s)
}

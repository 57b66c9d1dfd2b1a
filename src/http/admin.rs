//! `/api/admin/*`: the operator's API (users, credits, keys, tasks, recheck,
//! audit) and the diagnose report. Opened only by the `ADMIN_TOKEN` secret.

use super::account::{ledger_page, user_view};
use super::{authenticate_admin, decode_cursor, encode_cursor, id_cursor, json_response, page_limit, paginate, random_bytes, read_json, Ctx};
use crate::domain::error::{AppError, AppResult};
use crate::domain::signature::{api_key_hash, new_api_key, new_id};
use crate::domain::task::TaskState;
use crate::edge::store;
use crate::pipeline::now_ms;
use serde_json::{json, Value};
use worker::{Method, Request, Response};

pub enum AdminRoute {
    CreateUser,
    ListUsers,
    GetUser(String),
    UserLedger(String),
    Credits(String),
    RotateKey(String),
    ListTasks,
    Recheck(String),
    Diagnose,
    Audit,
}

impl AdminRoute {
    pub fn name(&self) -> &'static str {
        match self {
            AdminRoute::CreateUser => "users.create",
            AdminRoute::ListUsers => "users.list",
            AdminRoute::GetUser(_) => "users.get",
            AdminRoute::UserLedger(_) => "users.ledger",
            AdminRoute::Credits(_) => "users.credits",
            AdminRoute::RotateKey(_) => "users.keys",
            AdminRoute::ListTasks => "tasks.list",
            AdminRoute::Recheck(_) => "tasks.recheck",
            AdminRoute::Diagnose => "diagnose",
            AdminRoute::Audit => "audit",
        }
    }
}

pub fn route(m: &Method, segs: &[&str]) -> Result<AdminRoute, Option<&'static str>> {
    let is = |want: Method| *m == want;
    match segs {
        ["users"] if is(Method::Post) => Ok(AdminRoute::CreateUser),
        ["users"] if is(Method::Get) => Ok(AdminRoute::ListUsers),
        ["users"] => Err(Some("GET, POST")),
        ["users", id] if is(Method::Get) => Ok(AdminRoute::GetUser(id.to_string())),
        ["users", id, "ledger"] if is(Method::Get) => Ok(AdminRoute::UserLedger(id.to_string())),
        ["users", id, "credits"] if is(Method::Post) => Ok(AdminRoute::Credits(id.to_string())),
        ["users", id, "keys"] if is(Method::Post) => Ok(AdminRoute::RotateKey(id.to_string())),
        ["users", _] | ["users", _, "ledger"] => Err(Some("GET")),
        ["users", _, "credits"] | ["users", _, "keys"] => Err(Some("POST")),
        ["tasks"] if is(Method::Get) => Ok(AdminRoute::ListTasks),
        ["tasks"] => Err(Some("GET")),
        ["tasks", id, "recheck"] if is(Method::Post) => Ok(AdminRoute::Recheck(id.to_string())),
        ["tasks", _, "recheck"] => Err(Some("POST")),
        ["diagnose"] if is(Method::Get) => Ok(AdminRoute::Diagnose),
        ["diagnose"] => Err(Some("GET")),
        ["audit"] if is(Method::Get) => Ok(AdminRoute::Audit),
        ["audit"] => Err(Some("GET")),
        _ => Err(None),
    }
}

const MAX_ADMIN_BODY: u64 = 16 * 1024;
const MAX_CREDITS: i64 = 1_000_000_000;

fn credits_field(body: &Value, name: &str, allow_negative: bool) -> AppResult<i64> {
    let v = body.get(name).ok_or_else(|| AppError::validation(name, format!("'{name}' is required.")))?;
    let n = v
        .as_i64()
        .filter(|_| v.is_i64() || v.is_u64())
        .ok_or_else(|| AppError::invalid_request(format!("'{name}' must be a whole number.")).with_details(json!({ "field": name })))?;
    if n.abs() > MAX_CREDITS || (!allow_negative && n < 0) {
        return Err(AppError::validation(name, format!("'{name}' must be between {} and {MAX_CREDITS}.", if allow_negative { -MAX_CREDITS } else { 0 })));
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

fn valid_id(id: &str, prefix: &str) -> AppResult<()> {
    if id.starts_with(prefix) && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(AppError::not_found())
    }
}

pub async fn dispatch(ctx: &Ctx, mut req: Request, r: AdminRoute) -> AppResult<Response> {
    if let AdminRoute::Diagnose = r {
        // Diagnose must work, and say what is wrong, when other settings are broken.
        return crate::diagnose::run(ctx, &req).await;
    }
    let cfg = ctx.config()?;
    authenticate_admin(ctx, &req, &cfg.admin_token).await?;
    let db = ctx.db()?;
    let now = now_ms();
    match r {
        AdminRoute::CreateUser => {
            let body = read_json(&mut req, MAX_ADMIN_BODY).await?;
            let name = text_field(&body, "name", 100)?;
            let credits = credits_field(&body, "credits", false)?;
            let id = new_id("usr", &random_bytes::<16>()?);
            let key = new_api_key(&random_bytes::<32>()?);
            store::create_user(&db, &id, &name, credits, &api_key_hash(&key), now).await?;
            ctx.log.info("admin.user_created", "user created", json!({ "target_user": id, "credits": credits }));
            let user = store::user_by_id(&db, &id).await?.ok_or_else(|| AppError::internal("user vanished"))?;
            json_response(201, &json!({ "user": user_view(&user), "api_key": key }))
        }
        AdminRoute::ListUsers => {
            let limit = page_limit(ctx)?;
            let users = store::list_users(&db, limit + 1, decode_cursor(ctx)?).await?;
            let (page, next) = paginate(users, limit, |u| encode_cursor(u.created_at, &u.id));
            json_response(200, &json!({ "users": page.iter().map(user_view).collect::<Vec<_>>(), "next_cursor": next }))
        }
        AdminRoute::GetUser(id) => {
            valid_id(&id, "usr_")?;
            let user = store::user_by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
            json_response(200, &json!({ "user": user_view(&user) }))
        }
        AdminRoute::UserLedger(id) => {
            valid_id(&id, "usr_")?;
            store::user_by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
            json_response(200, &ledger_page(ctx, &db, &id).await?)
        }
        AdminRoute::Credits(id) => {
            valid_id(&id, "usr_")?;
            let body = read_json(&mut req, MAX_ADMIN_BODY).await?;
            let amount = credits_field(&body, "amount", true)?;
            if amount == 0 {
                return Err(AppError::validation("amount", "'amount' must not be zero."));
            }
            let reason = text_field(&body, "reason", 200)?;
            let user = store::user_by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
            match store::adjust_credits(&db, &id, amount, &reason, now).await? {
                Some(balance) => {
                    store::audit(&db, "admin", "credits.change", &id, &format!("{amount:+} ({reason})"), now).await?;
                    ctx.log.info("admin.credits", "credits changed by the operator", json!({ "target_user": id, "amount": amount, "balance": balance }));
                    json_response(200, &json!({ "user": user_view(&store::UserRow { credits: balance, ..user }) }))
                }
                None => Err(AppError::validation("amount", format!("The balance is {}; it cannot go below zero.", user.credits))
                    .with_details(json!({ "field": "amount", "balance": user.credits }))),
            }
        }
        AdminRoute::RotateKey(id) => {
            valid_id(&id, "usr_")?;
            let key = new_api_key(&random_bytes::<32>()?);
            if !store::rotate_key(&db, &id, &api_key_hash(&key), now).await? {
                return Err(AppError::not_found());
            }
            ctx.log.info("admin.key_rotated", "user key rotated; old keys revoked", json!({ "target_user": id }));
            json_response(201, &json!({ "user_id": id, "api_key": key }))
        }
        AdminRoute::ListTasks => {
            let limit = page_limit(ctx)?;
            let state = match ctx.query("state").filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(TaskState::parse(s).ok_or_else(|| AppError::validation("state", "Unknown state."))?),
            };
            let stuck = ctx.query("stuck") == Some("true");
            let tasks = if stuck {
                store::stuck_tasks(&db, now - cfg.task_deadline_s * 1000, limit).await?
            } else {
                store::list_tasks(&db, ctx.query("user_id"), state.map(|s| s.as_str()), limit + 1, decode_cursor(ctx)?).await?
            };
            let (page, next) = paginate(tasks, limit, |t| encode_cursor(t.created_at, &t.id));
            let sign = ctx.result_url(&cfg);
            let views: Vec<Value> = page
                .iter()
                .map(|t| {
                    let mut v = t.view(&sign);
                    if let Some(o) = v.as_object_mut() {
                        o.insert("user_id".into(), json!(t.user_id));
                        o.insert("attempts".into(), json!(t.attempts));
                    }
                    v
                })
                .collect();
            json_response(200, &json!({ "tasks": views, "next_cursor": next }))
        }
        AdminRoute::Recheck(id) => {
            valid_id(&id, "tsk_")?;
            let pipeline = ctx.pipeline()?;
            let task = store::task_by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
            ctx.log.set("task_id", &id);
            let before = task.state.clone();
            if task.provider_task_id.is_some() && !task.state().is_terminal() {
                pipeline.refresh(&task).await?;
            }
            let after = store::task_by_id(&db, &id).await?.ok_or_else(AppError::not_found)?;
            store::audit(&db, "admin", "task.recheck", &id, &format!("{before} -> {}", after.state), now).await?;
            let sign = ctx.result_url(&cfg);
            json_response(200, &json!({ "task": after.view(&sign), "previous_state": before }))
        }
        AdminRoute::Audit => {
            let limit = page_limit(ctx)?;
            let rows = store::audit_log(&db, ctx.query("target"), limit + 1, id_cursor(ctx)?).await?;
            let (page, next) = paginate(rows, limit, |r| r.id.to_string());
            let entries: Vec<Value> = page
                .iter()
                .map(|r| json!({ "id": r.id, "actor": r.actor, "action": r.action, "target": r.target, "detail": r.detail,
                                 "created_at": crate::domain::time::rfc3339(r.created_at) }))
                .collect();
            json_response(200, &json!({ "entries": entries, "next_cursor": next }))
        }
        AdminRoute::Diagnose => Err(AppError::not_found()),
    }
}


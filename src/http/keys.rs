//! A person's own API keys (`GET`/`POST /api/me/keys`, `DELETE /api/me/keys/:id`;
//! a new key is shown once) and signing out everywhere (`DELETE /api/me/sessions`).
//! Each accepts the session cookie or an API key, like every user route.

use super::ctx::Ctx;
use super::extract::read_json;
use super::request::Request;
use super::response::Response;
use super::{auth, json_response};
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::store::accounts::{self, KeyRow};
use crate::domain::account::{is_key_public_id, key_hint, key_name, key_public_id, MAX_ACTIVE_KEYS};
use crate::domain::error::{AppError, AppResult};
use crate::domain::session::{clear_cookie, CookieKind};
use crate::domain::signature::{api_key_hash, new_api_key};
use crate::domain::time::rfc3339;
use serde_json::{json, Value};

fn key_view(k: &KeyRow) -> Value {
    json!({ "id": key_public_id(&k.key_hash), "name": k.name.as_deref().unwrap_or("API key"), "hint": k.hint,
            "created_at": rfc3339(k.created_at) })
}

/// `GET /api/me/keys`: the keys that work, newest first (never the keys themselves).
pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    let keys = accounts::active_keys(&db, &user.id).await?;
    json_response(200, &json!({ "keys": keys.iter().map(key_view).collect::<Vec<_>>() }))
}

/// `POST /api/me/keys {"name"?}` → `201 {"key", "api_key"}`: the only time the key is shown.
pub async fn create(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    let body = read_json(&req, 4 * 1024).await?;
    let name = key_name(body.get("name"))?;
    let key = new_api_key(&random_bytes::<32>()?);
    let hash = api_key_hash(&key);
    let now = now_ms();
    if !accounts::add_key(&db, &user.id, &hash, &name, &key_hint(&key), now, MAX_ACTIVE_KEYS).await? {
        return Err(AppError::validation("name", format!("You already have {MAX_ACTIVE_KEYS} keys; revoke one first."))
            .with_details(json!({ "field": "name", "max_keys": MAX_ACTIVE_KEYS })));
    }
    let row = KeyRow { key_hash: hash, name: Some(name), hint: Some(key_hint(&key)), created_at: now };
    ctx.log.info("keys.created", "API key created by its owner", json!({ "key_id": key_public_id(&row.key_hash) }));
    json_response(201, &json!({ "key": key_view(&row), "api_key": key }))
}

/// `DELETE /api/me/keys/:id`: the key stops working at once.
pub async fn revoke(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    let id = ctx.param("id");
    if !is_key_public_id(id) || !accounts::revoke_key(&db, &user.id, id, now_ms()).await? {
        return Err(AppError::not_found());
    }
    ctx.log.info("keys.revoked", "API key revoked by its owner", json!({ "key_id": id }));
    json_response(200, &json!({ "revoked": id }))
}

/// `DELETE /api/me/sessions`: signs the person out in every browser.
pub async fn end_sessions(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    let ended = accounts::end_all_sessions(&db, &user.id).await?;
    ctx.set_cookie(clear_cookie(CookieKind::Session, ctx.secure_cookies(&cfg)));
    ctx.log.info("auth.logout_all", "signed out everywhere", json!({ "sessions_ended": ended }));
    json_response(200, &json!({ "ended": ended }))
}

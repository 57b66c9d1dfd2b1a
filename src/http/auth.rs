//! Who is asking: a user by API key (`nbk_…`, stored as a hash), or the
//! operator by the `ADMIN_TOKEN` secret.

use super::ctx::Ctx;
use super::request::Request;
use crate::adapters::d1::Db;
use crate::adapters::store::users::{self, User};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::signature::{api_key_hash, ct_eq};

fn bearer(req: &Request) -> Option<String> {
    let value = req.header("Authorization")?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    (!token.is_empty() && token.len() <= 256).then(|| token.to_string())
}

/// The hash of the request's user key, or 401. Admin tokens are not user keys.
pub fn user_key_hash(req: &Request) -> AppResult<String> {
    let key = bearer(req).ok_or_else(|| AppError::unauthorized("Send your API key as 'Authorization: Bearer nbk_…'."))?;
    if !key.starts_with("nbk_") {
        return Err(AppError::unauthorized("That is not a valid API key."));
    }
    Ok(api_key_hash(&key))
}

/// The user behind the request's key (401 when there is none).
pub async fn user(ctx: &Ctx, req: &Request, db: &Db) -> AppResult<User> {
    let hash = user_key_hash(req)?;
    let user =
        users::by_key(db, &hash).await?.ok_or_else(|| AppError::unauthorized("That API key is not valid (it may have been rotated)."))?;
    ctx.log.set("user_id", user.id.as_str());
    Ok(user)
}

/// Checks the operator token; a valid user key here is 403, anything else 401.
pub async fn admin(ctx: &Ctx, req: &Request, admin_token: &str) -> AppResult<()> {
    let token = bearer(req).ok_or_else(|| AppError::unauthorized("Send the operator token as 'Authorization: Bearer …'."))?;
    if ct_eq(token.as_bytes(), admin_token.as_bytes()) {
        ctx.log.set("user_id", "admin");
        return Ok(());
    }
    if token.starts_with("nbk_") && users::by_key(&ctx.db()?, &api_key_hash(&token)).await?.is_some() {
        return Err(AppError::new(ErrorCode::Forbidden, "User API keys cannot use the admin API."));
    }
    Err(AppError::unauthorized("That operator token is not valid."))
}

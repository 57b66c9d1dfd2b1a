//! Buying credits: `GET /api/billing/packs`, `POST /api/billing/checkout`
//! (an order first, then one Stripe Checkout Session for it),
//! `GET /api/billing/orders`, and the refusal to create while credits are owed.
//! The credits themselves arrive with Stripe's webhook (`stripe_webhook.rs`).

use super::ctx::Ctx;
use super::extract::{decode_cursor, encode_cursor, page_limit, paginate, read_json};
use super::request::Request;
use super::response::Response;
use super::{auth, json_response};
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::d1::Db;
use crate::adapters::store::orders::{self, NewOrder};
use crate::adapters::store::users::User;
use crate::adapters::stripe::StripeClient;
use crate::domain::billing::{BillingConfig, CreditPack, Order, OrderState, BILLING_SETTINGS, CHECKOUT_TTL_S, REUSE_MARGIN_S};
use crate::domain::config::Config;
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::ids::OrderId;
use crate::domain::stripe::{checkout_form, CheckoutRequest, StripeOutcome};
use serde_json::{json, Value};
use std::time::Duration;
use worker::Delay;

const MAX_CHECKOUT_BODY: u64 = 4 * 1024;
/// A second request for an order whose session another request is creating
/// looks again this often, this many times, before answering 503.
const WAIT_STEP_MS: u64 = 300;
const WAIT_STEPS: u32 = 30;

/// The billing settings, or 503 naming them when buying credits is off.
pub fn enabled(cfg: &Config) -> AppResult<&BillingConfig> {
    cfg.billing.as_ref().ok_or_else(|| {
        let settings: Vec<Value> =
            BILLING_SETTINGS.iter().map(|name| json!({ "name": name, "problem": "not set: buying credits is off" })).collect();
        AppError::new(ErrorCode::ConfigError, "Buying credits is not enabled on this deployment.")
            .with_details(json!({ "settings": settings }))
    })
}

/// Refuses to create while the account owes credits (a purchase refunded or
/// disputed after its credits were spent): `402 credits_owed` until an
/// operator clears it. Reads the user row authentication already loaded.
pub fn ensure_not_owing(user: &User) -> AppResult<()> {
    if user.owed <= 0 {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::CreditsOwed,
        format!(
            "Your account owes {} credits: a purchase was refunded or disputed after its credits were spent. \
             Creating is paused until this is settled; contact the operator.",
            user.owed
        ),
    )
    .with_details(json!({ "owed": user.owed })))
}

fn pack_view(p: &CreditPack) -> Value {
    json!({ "id": p.id, "credits": p.credits, "amount": p.amount, "currency": p.currency })
}

/// `GET /api/billing/packs` (public): what is on sale; an empty list when
/// buying credits is off.
pub async fn packs(ctx: &Ctx, _req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let packs: Vec<Value> = cfg.billing.as_ref().map(|b| b.packs.iter().map(pack_view).collect()).unwrap_or_default();
    json_response(200, &json!({ "packs": packs }))
}

/// `POST /api/billing/checkout {"pack"}`: records the order, then creates its
/// Checkout Session at Stripe (our order id as the Idempotency-Key) and
/// answers `{"order_id","url"}`: 201 for a new order, 200 for the user's open
/// order of that pack (a double click, a second tab, a return from "cancel").
pub async fn checkout(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let billing = enabled(&cfg)?;
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    ensure_not_owing(&user)?;
    let pack = chosen_pack(&req, billing).await?;
    let new_id = OrderId::new(&random_bytes::<16>()?);
    let new = NewOrder {
        id: &new_id,
        user_id: &user.id,
        pack_id: &pack.id,
        credits: pack.credits,
        amount: pack.amount,
        currency: &pack.currency,
    };
    let (order, created) = orders::open_or_create(&db, &new, now_ms(), REUSE_MARGIN_S * 1000).await?;
    ctx.log.set("order_id", order.id.as_str());
    let order = match (order.state, created) {
        (OrderState::Pending, true) => create_session(ctx, &cfg, billing, &db, order).await?,
        (OrderState::Pending, false) => wait_for_session(ctx, &cfg, billing, &db, order).await?,
        _ => order,
    };
    let url = order.checkout_url.clone().ok_or_else(|| AppError::internal("open order without a checkout url"))?;
    ctx.log.info(
        "billing.checkout",
        if created { "order recorded and checkout opened" } else { "open order offered again" },
        json!({ "order_id": order.id, "pack": order.pack_id, "credits": order.credits, "amount": order.amount, "currency": order.currency, "reused": !created }),
    );
    json_response(if created { 201 } else { 200 }, &json!({ "order_id": order.id, "url": url, "order": order.view(false) }))
}

async fn chosen_pack<'a>(req: &Request, billing: &'a BillingConfig) -> AppResult<&'a CreditPack> {
    let body = read_json(req, MAX_CHECKOUT_BODY).await?;
    let allowed: Vec<&str> = billing.packs.iter().map(|p| p.id.as_str()).collect();
    match body.get("pack") {
        Some(Value::String(id)) => billing.pack(id).ok_or_else(|| AppError::validation_allowed("pack", "There is no such pack.", &allowed)),
        None | Some(Value::Null) => Err(AppError::validation_allowed("pack", "Choose a pack.", &allowed)),
        Some(_) => Err(AppError::invalid_request("'pack' must be a string.").with_details(json!({ "field": "pack" }))),
    }
}

/// Asks Stripe for the order's Checkout Session and records it; on any
/// failure the order fails (nothing was granted, nothing can be paid).
async fn create_session(ctx: &Ctx, cfg: &Config, billing: &BillingConfig, db: &Db, order: Order) -> AppResult<Order> {
    let form = checkout_form(&CheckoutRequest {
        order_id: order.id.as_str(),
        user_id: order.user_id.as_str(),
        credits: order.credits,
        amount: order.amount,
        currency: &order.currency,
        return_origin: &ctx.public_origin(cfg),
        // From the order, not the clock: a request that takes over a silent
        // one sends the very same parameters with the same Idempotency-Key.
        expires_at_s: order.created_at / 1000 + CHECKOUT_TTL_S,
    });
    let client = StripeClient::new(billing, &ctx.log);
    match client.create_checkout_session(&form, order.id.as_str()).await {
        StripeOutcome::Ok(session) => {
            let expires_at = session.expires_at_s.map_or(order.created_at + CHECKOUT_TTL_S * 1000, |s| s * 1000);
            orders::mark_open(db, &order.id, &session.id, &session.url, expires_at, now_ms()).await?;
            // Ours, or the same session stored by a request that took our lease over.
            orders::by_id(db, &order.id).await?.ok_or_else(|| AppError::internal("order vanished"))
        }
        StripeOutcome::Refused { status, error_type, error_code } => {
            orders::mark_failed(db, &order.id, "stripe_refused", now_ms()).await?;
            Err(AppError::new(ErrorCode::UpstreamError, "The payment provider refused to start a checkout. Nothing was charged.")
                .with_internal(format!("stripe http {status} {error_type} {error_code}")))
        }
        StripeOutcome::Unavailable(why) => {
            orders::mark_failed(db, &order.id, "stripe_unavailable", now_ms()).await?;
            Err(AppError::new(
                ErrorCode::UpstreamUnavailable,
                "The payment provider cannot be reached right now. Nothing was charged; please try again in a moment.",
            )
            .retry_after(5)
            .with_internal(format!("stripe {why}")))
        }
    }
}

/// Another request (a double click) is creating this order's session: wait
/// for it, and take over (same Idempotency-Key) if that request went silent.
async fn wait_for_session(ctx: &Ctx, cfg: &Config, billing: &BillingConfig, db: &Db, order: Order) -> AppResult<Order> {
    let mut current = order;
    for _ in 0..WAIT_STEPS {
        match current.state {
            OrderState::Open => return Ok(current),
            OrderState::Pending => {}
            _ => break,
        }
        if current.lease_until.unwrap_or(0) < now_ms() && orders::claim_lease(db, &current.id, now_ms()).await? {
            return create_session(ctx, cfg, billing, db, current).await;
        }
        if ctx.log.subrequests_left() < 4 {
            break;
        }
        Delay::from(Duration::from_millis(WAIT_STEP_MS)).await;
        current = orders::by_id(db, &current.id).await?.ok_or_else(|| AppError::internal("order vanished"))?;
    }
    Err(AppError::new(
        ErrorCode::UpstreamUnavailable,
        "The checkout could not be prepared right now. Nothing was charged; please try again.",
    )
    .retry_after(5)
    .with_internal(format!("the concurrent checkout of this order ended {}", current.state.as_str())))
}

/// `GET /api/billing/orders?limit=&cursor=&state=`: the user's orders, newest first.
pub async fn list(ctx: &Ctx, req: Request) -> AppResult<Response> {
    ctx.config()?;
    let db = ctx.db()?;
    let user = auth::user(ctx, &req, &db).await?;
    let limit = page_limit(ctx)?;
    let state = OrderState::parse_filter(ctx.query("state"))?;
    let rows = orders::list(&db, Some(&user.id), state, false, limit + 1, decode_cursor(ctx)?).await?;
    let (page, next) = paginate(rows, limit, |o| encode_cursor(o.created_at, o.id.as_str()));
    json_response(200, &json!({ "orders": page.iter().map(|o| o.view(false)).collect::<Vec<_>>(), "owed": user.owed, "next_cursor": next }))
}

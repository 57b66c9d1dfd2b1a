//! `POST /api/webhooks/stripe`: Stripe's events about our Checkout Sessions
//! and their charges. The signature and its timestamp are checked over the raw
//! body before anything is read from it (400 and a `stripe.rejected` line
//! otherwise); each event is then applied in one transaction that also
//! remembers its id, so a redelivery changes nothing and still answers 200.

use super::billing::enabled;
use super::ctx::Ctx;
use super::extract::read_body;
use super::json_response;
use super::request::Request;
use super::response::Response;
use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::store::orders::{self, Applied, ReversalRequest};
use crate::adapters::stripe::StripeClient;
use crate::domain::billing::{BillingConfig, Order, OrderState, OrderTransition, ReversalKind};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::stripe::{parse_event, verify_signature, CloseReason, StripeAction, StripeEvent, StripeOutcome, SIGNATURE_TOLERANCE_S};
use serde_json::json;

/// Stripe's events are a few KB; a charge with many refunds stays far below this.
const MAX_EVENT_BYTES: u64 = 512 * 1024;

pub async fn receive(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let billing = enabled(&cfg)?;
    let body = read_body(&req, MAX_EVENT_BYTES).await?;
    let header = req.header("Stripe-Signature");
    if let Err(why) = verify_signature(&billing.webhook_secret, header.as_deref(), &body, now_ms() / 1000, SIGNATURE_TOLERANCE_S) {
        ctx.log.warn("stripe.rejected", "Stripe webhook refused: signature", json!({ "reason": why.reason() }));
        return Err(
            AppError::invalid_request(format!("The Stripe-Signature header is not valid: {}.", why.reason())).with_internal(why.reason())
        );
    }
    let Some(event) = parse_event(&body) else {
        ctx.log.warn("stripe.rejected", "Stripe webhook refused: not an event", json!({ "reason": "no evt_ id or type" }));
        return Err(AppError::invalid_request("The body is not a Stripe event."));
    };
    ctx.log.set("stripe_event_id", &event.id);
    let db = ctx.db()?;
    let outcome = apply(ctx, &db, billing, &event).await?;
    ctx.log.info(
        "stripe.event",
        "Stripe event handled",
        json!({ "stripe_event_type": event.kind, "outcome": outcome, "livemode": event.livemode }),
    );
    json_response(200, &json!({ "ok": true, "outcome": outcome }))
}

/// What the event did, as a stable word for the log and the answer.
async fn apply(ctx: &Ctx, db: &Db, billing: &BillingConfig, event: &StripeEvent) -> AppResult<&'static str> {
    let now = now_ms();
    match &event.action {
        StripeAction::Paid { session_id, payment_intent, amount_total, currency } => {
            let Some(order) = session_order(ctx, db, event, session_id, now).await? else { return Ok("unknown_session") };
            let amount_differs = amount_total.is_some_and(|a| a != order.amount);
            let currency_differs = currency.as_ref().is_some_and(|c| *c != order.currency);
            if amount_differs || currency_differs {
                orders::remember_event(db, event, Some(&order.id), now).await?;
                ctx.log.error(
                    "billing.mismatch",
                    "a paid session does not match its order; nothing granted",
                    json!({ "expected_amount": order.amount, "amount_total": amount_total, "currency": currency }),
                );
                return Ok("amount_mismatch");
            }
            let applied = orders::grant(db, event, &order, session_id, payment_intent.as_deref(), now).await?;
            if applied == Applied::Changed {
                ctx.log.info(
                    "billing.granted",
                    "purchase granted",
                    json!({ "credits": order.credits, "amount": order.amount, "currency": order.currency }),
                );
            }
            Ok(word(applied, "granted"))
        }
        StripeAction::Processing { session_id, payment_intent } => {
            let Some(order) = session_order(ctx, db, event, session_id, now).await? else { return Ok("unknown_session") };
            Ok(word(orders::mark_processing(db, event, &order, session_id, payment_intent.as_deref(), now).await?, "processing"))
        }
        StripeAction::Closed { session_id, why } => {
            let Some(order) = session_order(ctx, db, event, session_id, now).await? else { return Ok("unknown_session") };
            let t = match why {
                CloseReason::PaymentFailed => OrderTransition::FAIL,
                CloseReason::Expired => OrderTransition::EXPIRE,
            };
            let applied = orders::close(db, event, &order, session_id, t, why.as_str(), now).await?;
            if applied == Applied::Changed {
                ctx.log.info("billing.closed", "order closed unpaid", json!({ "why": why.as_str() }));
            }
            Ok(word(applied, "closed"))
        }
        StripeAction::Refunded { payment_intent, charge_id, amount_refunded, refund_id } => {
            let Some(order) = paid_order(ctx, db, billing, event, payment_intent, now).await? else { return Ok("unknown_payment") };
            // Keyed by the cumulative amount: each refund of the charge raises it once.
            let key = format!("refund:{charge_id}:{amount_refunded}");
            let stripe_id = refund_id.as_deref().unwrap_or(charge_id);
            let r = ReversalRequest { kind: ReversalKind::Refund, key: &key, stripe_id, money: *amount_refunded };
            reverse(ctx, db, event, &order, &r, now).await
        }
        StripeAction::Disputed { payment_intent, dispute_id, amount } => {
            let Some(order) = paid_order(ctx, db, billing, event, payment_intent, now).await? else { return Ok("unknown_payment") };
            let key = format!("dispute:{dispute_id}");
            let r = ReversalRequest { kind: ReversalKind::Dispute, key: &key, stripe_id: dispute_id, money: *amount };
            reverse(ctx, db, event, &order, &r, now).await
        }
        StripeAction::Unusable(why) => {
            ctx.log.warn("billing.unusable_event", "a Stripe event without a field it needs; nothing changed", json!({ "why": why }));
            Ok(if orders::remember_event(db, event, None, now).await? { "unusable" } else { "replayed" })
        }
        StripeAction::Ignored => Ok(if orders::remember_event(db, event, None, now).await? { "ignored" } else { "replayed" }),
    }
}

fn word(applied: Applied, changed: &'static str) -> &'static str {
    match applied {
        Applied::Changed => changed,
        Applied::NoChange => "no_change",
        Applied::Replayed => "replayed",
    }
}

/// The order whose Checkout Session this is (by the id we stored, never by
/// the event's metadata); an unknown session is remembered and logged.
async fn session_order(ctx: &Ctx, db: &Db, event: &StripeEvent, session_id: &str, now: i64) -> AppResult<Option<Order>> {
    let order = orders::by_session(db, session_id).await?;
    found(ctx, db, event, order, "billing.unknown_order", "a Checkout Session this service did not create", now).await
}

/// The paid order a refund or dispute of this PaymentIntent takes back from
/// (the PaymentIntent is stored from its session's events); an unknown
/// payment is remembered and logged.
///
/// Stripe does not promise order: a refund can arrive before the purchase's
/// own event (our endpoint was down during the payment, say). Remembered
/// now, it would take nothing, and the late purchase event would then grant
/// credits that were refunded. So when the payment is one of our orders not
/// yet paid here (Stripe says which Checkout Session it belongs to when we do
/// not know it yet), the event is refused with 503, not remembered, and
/// Stripe delivers it again later, after the purchase's event.
async fn paid_order(
    ctx: &Ctx,
    db: &Db,
    billing: &BillingConfig,
    event: &StripeEvent,
    payment_intent: &str,
    now: i64,
) -> AppResult<Option<Order>> {
    let order = match orders::by_payment_intent(db, payment_intent).await? {
        Some(order) => Some(order),
        None => {
            let client = StripeClient::new(billing, &ctx.log);
            let ask_again = |why: String| {
                AppError::new(ErrorCode::UpstreamUnavailable, "Stripe could not say whose payment this is; deliver the event again later.")
                    .with_internal(format!("session of payment: {why}"))
            };
            match client.session_of_payment(payment_intent).await {
                StripeOutcome::Ok(Some(session_id)) => orders::by_session(db, &session_id).await?,
                StripeOutcome::Ok(None) => None,
                StripeOutcome::Refused { status, .. } => return Err(ask_again(format!("http {status}"))),
                StripeOutcome::Unavailable(why) => return Err(ask_again(why)),
            }
        }
    };
    if let Some(o) = order.as_ref().filter(|o| o.state != OrderState::Paid) {
        ctx.log.set("order_id", o.id.as_str());
        ctx.log.warn(
            "billing.reversal_early",
            "a refund or dispute arrived before its purchase was confirmed here; Stripe will deliver it again",
            json!({ "stripe_event_type": event.kind, "order_state": o.state.as_str() }),
        );
        return Err(AppError::new(
            ErrorCode::UpstreamUnavailable,
            "This payment's purchase is not confirmed here yet; deliver the event again later.",
        ));
    }
    found(ctx, db, event, order, "billing.unknown_order", "a payment that is not an order of this service", now).await
}

async fn found(ctx: &Ctx, db: &Db, event: &StripeEvent, order: Option<Order>, name: &str, msg: &str, now: i64) -> AppResult<Option<Order>> {
    match order {
        Some(o) => {
            ctx.log.set("order_id", o.id.as_str());
            ctx.log.set("user_id", o.user_id.as_str());
            Ok(Some(o))
        }
        None => {
            orders::remember_event(db, event, None, now).await?;
            ctx.log.warn(name, msg, json!({ "stripe_event_type": event.kind }));
            Ok(None)
        }
    }
}

async fn reverse(ctx: &Ctx, db: &Db, event: &StripeEvent, order: &Order, r: &ReversalRequest<'_>, now: i64) -> AppResult<&'static str> {
    let (applied, reversal) = orders::reverse(db, event, order, r, now).await?;
    if let Some(rev) = reversal {
        ctx.log.info(
            "billing.reversed",
            "credits taken back",
            json!({ "kind": r.kind.as_str(), "stripe_id": r.stripe_id, "credits": rev.credits, "taken": rev.taken, "owed": rev.owed }),
        );
        if rev.owed > 0 {
            ctx.log.warn("billing.owed", "credits already spent are now owed; creating is paused", json!({ "owed": rev.owed }));
        }
    }
    Ok(word(applied, "reversed"))
}

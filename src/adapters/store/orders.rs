//! Orders of credits, the Stripe events we accepted, and the refunds and
//! disputes that took credits back.
//!
//! Money invariants, held by every batch here (each batch is one transaction):
//! - `users.credits = SUM(ledger.amount)` of the user: every balance change is
//!   written together with its ledger row, both conditional on the same guard.
//! - An order grants once: the grant is conditional on the order moving into
//!   `paid` (`state IN (…)`, `changes() = 1`), and a unique index on the
//!   purchase's ledger reason backs it up.
//! - A refund or dispute takes back once: its key is the primary key of
//!   `order_reversals`; the balance, the order and the ledger change only when
//!   that row was inserted (`changes() = 1` chaining).
//! - A balance never goes below zero: what a reversal cannot take is recorded
//!   as owed, on the order and on the user (`users.owed = SUM(orders.owed)`).
//! - Every batch that acts on an event starts by remembering its id; a
//!   redelivery inserts nothing, so nothing after it in the batch applies.

use super::super::d1::{num, opt_text, text, Db, Stmt};
use super::states_in;
use crate::domain::billing::{Order, OrderState, OrderTransition, ReversalKind, SESSION_LEASE_MS};
use crate::domain::error::{AppError, AppResult};
use crate::domain::ids::{OrderId, UserId};
use crate::domain::stripe::StripeEvent;
use serde_json::Value;
use wasm_bindgen::JsValue;

/// A pending order older than this, whose lease ran out, is failed as abandoned.
const ABANDONED_AFTER_MS: i64 = 10 * 60 * 1000;

const ORDER_COLUMNS: &str = "id, user_id, pack_id, credits, amount, currency, state, checkout_session_id, checkout_url, \
    payment_intent_id, failure, expires_at, lease_until, refunded_amount, disputed_amount, reversed_credits, refund_credits, \
    owed, owed_cleared, created_at, updated_at, paid_at, closed_at";

/// `UPDATE orders SET state = <to>, <set> WHERE <where> AND state IN <from>`.
fn transition_sql(t: OrderTransition, set: &str, condition: &str, args: &mut Vec<JsValue>) -> String {
    args.push(text(t.to.as_str()));
    let to = args.len();
    let from = states_in("state", t.from, args);
    format!("UPDATE orders SET state = ?{to}, {set} WHERE {condition} AND {from}")
}

/// Orders from their rows (each read by `Order::from_row`).
async fn orders(db: &Db, stmt: Stmt) -> AppResult<Vec<Order>> {
    db.all::<Value>(stmt)
        .await?
        .iter()
        .map(|row| Order::from_row(row).ok_or_else(|| AppError::internal("an orders row did not decode")))
        .collect()
}

async fn order(db: &Db, stmt: Stmt) -> AppResult<Option<Order>> {
    Ok(orders(db, stmt).await?.into_iter().next())
}

pub async fn by_id(db: &Db, id: &OrderId) -> AppResult<Option<Order>> {
    order(db, db.stmt(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"), &[text(id.as_str())])?).await
}

pub async fn by_session(db: &Db, session_id: &str) -> AppResult<Option<Order>> {
    order(db, db.stmt(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE checkout_session_id = ?1"), &[text(session_id)])?).await
}

pub async fn by_payment_intent(db: &Db, payment_intent: &str) -> AppResult<Option<Order>> {
    order(db, db.stmt(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE payment_intent_id = ?1"), &[text(payment_intent)])?).await
}

/// What a new order is made of.
pub struct NewOrder<'a> {
    pub id: &'a OrderId,
    pub user_id: &'a UserId,
    pub pack_id: &'a str,
    pub credits: i64,
    pub amount: i64,
    pub currency: &'a str,
}

/// The user's unfinished order for this pack, or a new one: a double click is
/// one order. An open order too close to its expiry to be paid is closed
/// first. Returns the order and whether it is the new one (whose creator holds
/// the lease to create its Checkout Session).
/// Guard: the unique index `orders_unfinished_pack` (one `pending`/`open`
/// order per user and pack) decides between concurrent requests.
pub async fn open_or_create(db: &Db, new: &NewOrder<'_>, now: i64, reuse_margin_ms: i64) -> AppResult<(Order, bool)> {
    let user = text(new.user_id.as_str());
    let mut expire_args = vec![user.clone(), text(new.pack_id), num(now), num(reuse_margin_ms)];
    let expire = transition_sql(
        OrderTransition::EXPIRE,
        "failure = 'superseded', closed_at = ?3, updated_at = ?3, lease_until = NULL",
        "user_id = ?1 AND pack_id = ?2 AND state = 'open' AND expires_at < ?3 + ?4",
        &mut expire_args,
    );
    // A pending order whose session was never recorded (its requests died) is
    // given up after a while: nobody ever saw its Checkout URL.
    let mut abandon_args = vec![user.clone(), text(new.pack_id), num(now), num(ABANDONED_AFTER_MS)];
    let abandon = transition_sql(
        OrderTransition { from: &[OrderState::Pending], to: OrderState::Failed },
        "failure = 'abandoned', closed_at = ?3, updated_at = ?3, lease_until = NULL",
        "user_id = ?1 AND pack_id = ?2 AND lease_until < ?3 AND created_at < ?3 - ?4",
        &mut abandon_args,
    );
    db.batch(vec![
        db.stmt(&expire, &expire_args)?,
        db.stmt(&abandon, &abandon_args)?,
        db.stmt(
            "INSERT INTO orders (id, user_id, pack_id, credits, amount, currency, state, lease_until, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7 + ?8, ?7, ?7) ON CONFLICT DO NOTHING",
            &[
                text(new.id.as_str()),
                user.clone(),
                text(new.pack_id),
                num(new.credits),
                num(new.amount),
                text(new.currency),
                num(now),
                num(SESSION_LEASE_MS),
            ],
        )?,
    ])
    .await?;
    let stmt = db.stmt(
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1 AND pack_id = ?2 AND state IN ('pending', 'open')"),
        &[user, text(new.pack_id)],
    )?;
    match order(db, stmt).await? {
        Some(order) => {
            let created = order.id == *new.id;
            Ok((order, created))
        }
        // The other request's order was finished in between: ours was not inserted.
        None => Err(AppError::internal("unfinished order vanished between insert and read")),
    }
}

/// Takes over creating the session of a pending order whose creator went
/// silent (its lease ran out); the same Idempotency-Key is used again.
pub async fn claim_lease(db: &Db, id: &OrderId, now: i64) -> AppResult<bool> {
    let stmt = db.stmt(
        "UPDATE orders SET lease_until = ?2 + ?3, updated_at = ?2 WHERE id = ?1 AND state = 'pending' AND lease_until < ?2",
        &[text(id.as_str()), num(now), num(SESSION_LEASE_MS)],
    )?;
    Ok(db.run(stmt).await? == 1)
}

/// pending → open with the Checkout Session; false if someone else did it first.
pub async fn mark_open(db: &Db, id: &OrderId, session_id: &str, url: &str, expires_at: i64, now: i64) -> AppResult<bool> {
    let mut args = vec![text(id.as_str()), text(session_id), text(url), num(expires_at), num(now)];
    let sql = transition_sql(
        OrderTransition::OPEN,
        "checkout_session_id = ?2, checkout_url = ?3, expires_at = ?4, lease_until = NULL, updated_at = ?5",
        "id = ?1",
        &mut args,
    );
    Ok(db.run(db.stmt(&sql, &args)?).await? == 1)
}

/// pending → failed: Stripe refused or could not be reached. Nothing was granted.
pub async fn mark_failed(db: &Db, id: &OrderId, failure: &str, now: i64) -> AppResult<bool> {
    let mut args = vec![text(id.as_str()), text(failure), num(now)];
    let sql = transition_sql(
        OrderTransition { from: &[OrderState::Pending], to: OrderState::Failed },
        "failure = ?2, lease_until = NULL, closed_at = ?3, updated_at = ?3",
        "id = ?1",
        &mut args,
    );
    Ok(db.run(db.stmt(&sql, &args)?).await? == 1)
}

/// The statement that remembers an event id (changes 1 row if it is new).
fn remember(db: &Db, event: &StripeEvent, order_id: Option<&OrderId>, now: i64) -> AppResult<Stmt> {
    db.stmt(
        "INSERT INTO stripe_events (id, type, order_id, received_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
        &[text(&event.id), text(&event.kind), opt_text(order_id.map(OrderId::as_str)), num(now)],
    )
}

/// How long an event id is remembered. Stripe stops redelivering an event
/// after 3 days, and one arriving later would still change nothing: a grant
/// is keyed by its order, a reversal by its refund or dispute.
pub const KEEP_EVENTS_MS: i64 = 30 * 24 * 3600 * 1000;

/// The statement that forgets event ids older than [`KEEP_EVENTS_MS`].
pub fn forget_old_events(db: &Db, now: i64) -> AppResult<Stmt> {
    db.stmt("DELETE FROM stripe_events WHERE received_at < ?1", &[num(now - KEEP_EVENTS_MS)])
}

/// Remembers an event that changes nothing (an unknown type, an order we do
/// not know); true if it had not been seen before.
pub async fn remember_event(db: &Db, event: &StripeEvent, order_id: Option<&OrderId>, now: i64) -> AppResult<bool> {
    Ok(db.run(remember(db, event, order_id, now)?).await? == 1)
}

/// What an event's batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event had been seen before: nothing changed.
    Replayed,
    /// New event, but the order was not in a state it applies to.
    NoChange,
    Changed,
}

fn applied(changes: &[usize]) -> Applied {
    match (changes.first(), changes.get(1)) {
        (Some(1), Some(1)) => Applied::Changed,
        (Some(1), _) => Applied::NoChange,
        _ => Applied::Replayed,
    }
}

/// Grants the order's credits, exactly once, in the transaction that moves it
/// to `paid` (found by the session id we stored).
/// Invariant: the balance change and its `grant` ledger row happen only if
/// this event is new and this call moved the order into `paid`.
pub async fn grant(
    db: &Db,
    event: &StripeEvent,
    order: &Order,
    session_id: &str,
    payment_intent: Option<&str>,
    now: i64,
) -> AppResult<Applied> {
    let id = text(order.id.as_str());
    let mut args = vec![id.clone(), text(session_id), opt_text(payment_intent), num(now)];
    let paid = transition_sql(
        OrderTransition::GRANT,
        "payment_intent_id = COALESCE(payment_intent_id, ?3), paid_at = ?4, updated_at = ?4, lease_until = NULL, failure = NULL",
        "id = ?1 AND checkout_session_id = ?2 AND changes() = 1",
        &mut args,
    );
    let changes = db
        .batch(vec![
            remember(db, event, Some(&order.id), now)?,
            db.stmt(&paid, &args)?,
            db.stmt(
                "UPDATE users SET credits = credits + (SELECT credits FROM orders WHERE id = ?1), updated_at = ?2 \
                 WHERE id = (SELECT user_id FROM orders WHERE id = ?1) AND changes() = 1",
                &[id.clone(), num(now)],
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT u.id, 'grant', o.credits, u.credits, 'purchase ' || o.id, 'stripe', ?2 \
                 FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = ?1 AND changes() = 1",
                &[id, num(now)],
            )?,
        ])
        .await?;
    Ok(applied(&changes))
}

/// Checkout completed with the payment still on its way: open → processing,
/// remembering the PaymentIntent (refunds and disputes find the order by it).
pub async fn mark_processing(
    db: &Db,
    event: &StripeEvent,
    order: &Order,
    session_id: &str,
    payment_intent: Option<&str>,
    now: i64,
) -> AppResult<Applied> {
    let mut args = vec![text(order.id.as_str()), text(session_id), opt_text(payment_intent), num(now)];
    let sql = transition_sql(
        OrderTransition::AWAIT,
        "payment_intent_id = COALESCE(payment_intent_id, ?3), updated_at = ?4, lease_until = NULL",
        "id = ?1 AND checkout_session_id = ?2 AND changes() = 1",
        &mut args,
    );
    let changes = db.batch(vec![remember(db, event, Some(&order.id), now)?, db.stmt(&sql, &args)?]).await?;
    Ok(applied(&changes))
}

/// The payment failed or the session expired: the order closes unpaid.
pub async fn close(
    db: &Db,
    event: &StripeEvent,
    order: &Order,
    session_id: &str,
    t: OrderTransition,
    why: &str,
    now: i64,
) -> AppResult<Applied> {
    let mut args = vec![text(order.id.as_str()), text(session_id), text(why), num(now)];
    let sql = transition_sql(
        t,
        "failure = ?3, closed_at = ?4, updated_at = ?4, lease_until = NULL",
        "id = ?1 AND checkout_session_id = ?2 AND changes() = 1",
        &mut args,
    );
    let changes = db.batch(vec![remember(db, event, Some(&order.id), now)?, db.stmt(&sql, &args)?]).await?;
    Ok(applied(&changes))
}

/// A refund or dispute to apply: `key` makes it once (`refund:<charge>:<cumulative
/// amount>`, `dispute:<dispute>`), `stripe_id` names it in the ledger, `money`
/// is the cumulative refunded amount or the disputed amount.
pub struct ReversalRequest<'a> {
    pub kind: ReversalKind,
    pub key: &'a str,
    pub stripe_id: &'a str,
    pub money: i64,
}

/// One refund or dispute as it was applied.
#[derive(Debug, Clone)]
pub struct Reversal {
    pub credits: i64,
    pub taken: i64,
    pub owed: i64,
}

/// Takes back what a refund or dispute covers, once per `key`, never below
/// zero. The credits are computed inside the transaction by the rule of
/// `domain::billing::reversal_credits` (proportional, rounded down, less what
/// refunds of the charge already took, at most what is left of the grant), so
/// concurrent refunds of one order cannot both take the same credits.
/// Invariants: `users.credits = SUM(ledger)` (the balance and the `adjust` row
/// change together), `users.owed = SUM(orders.owed)` (both grow by the same
/// `owed`), and all of it only if this event and this key are new.
pub async fn reverse(
    db: &Db,
    event: &StripeEvent,
    order: &Order,
    r: &ReversalRequest<'_>,
    now: i64,
) -> AppResult<(Applied, Option<Reversal>)> {
    let key = r.key;
    let args = [text(key), text(order.id.as_str()), text(r.kind.as_str()), text(r.stripe_id), num(r.money), num(now)];
    let changes = db
        .batch(vec![
            remember(db, event, Some(&order.id), now)?,
            db.stmt(
                "INSERT INTO order_reversals (key, order_id, kind, stripe_id, amount, credits, taken, owed, created_at) \
                 SELECT ?1, w.id, ?3, ?4, CAST(?5 AS INTEGER), w.want, MIN(w.want, w.balance), w.want - MIN(w.want, w.balance), ?6 \
                 FROM (SELECT o.id, u.credits AS balance, \
                         MAX(0, MIN(MIN(o.credits * CAST(?5 AS INTEGER) / o.amount, o.credits) \
                                    - CASE WHEN ?3 = 'refund' THEN o.refund_credits ELSE 0 END, \
                                    o.credits - o.reversed_credits)) AS want \
                       FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = ?2 AND o.state = 'paid') w \
                 WHERE w.want > 0 AND changes() = 1 ON CONFLICT (key) DO NOTHING",
                &args,
            )?,
            db.stmt(
                "UPDATE users SET credits = credits - (SELECT taken FROM order_reversals WHERE key = ?1), \
                 owed = owed + (SELECT owed FROM order_reversals WHERE key = ?1), updated_at = ?6 \
                 WHERE id = (SELECT user_id FROM orders WHERE id = ?2) AND changes() = 1",
                &args,
            )?,
            db.stmt(
                "UPDATE orders SET reversed_credits = reversed_credits + (SELECT credits FROM order_reversals WHERE key = ?1), \
                 refund_credits = refund_credits + (SELECT CASE WHEN kind = 'refund' THEN credits ELSE 0 END FROM order_reversals WHERE key = ?1), \
                 owed = owed + (SELECT owed FROM order_reversals WHERE key = ?1), updated_at = ?6 \
                 WHERE id = ?2 AND changes() = 1",
                &args,
            )?,
            db.stmt(
                "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT u.id, 'adjust', -r.taken, u.credits, ?3 || ' ' || ?4, 'stripe', ?6 \
                 FROM order_reversals r JOIN orders o ON o.id = r.order_id JOIN users u ON u.id = o.user_id \
                 WHERE r.key = ?1 AND changes() = 1",
                &args,
            )?,
            // What Stripe reports, whether or not it took credits (idempotent).
            db.stmt(
                "UPDATE orders SET refunded_amount = MAX(refunded_amount, CASE WHEN ?2 = 'refund' THEN CAST(?3 AS INTEGER) ELSE 0 END), \
                 disputed_amount = MAX(disputed_amount, CASE WHEN ?2 = 'dispute' THEN CAST(?3 AS INTEGER) ELSE 0 END) WHERE id = ?1",
                &[text(order.id.as_str()), text(r.kind.as_str()), num(r.money)],
            )?,
        ])
        .await?;
    let outcome = applied(&changes);
    if outcome != Applied::Changed {
        return Ok((outcome, None));
    }
    let row = db.first::<Value>(db.stmt("SELECT credits, taken, owed FROM order_reversals WHERE key = ?1", &[text(key)])?).await?;
    let int = |r: &Value, k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
    Ok((outcome, row.map(|r| Reversal { credits: int(&r, "credits"), taken: int(&r, "taken"), owed: int(&r, "owed") })))
}

/// A page of orders, newest first: one user's, in one state, or those with credits owed.
pub async fn list(
    db: &Db,
    user_id: Option<&UserId>,
    state: Option<OrderState>,
    owed_only: bool,
    limit: u32,
    before: Option<(i64, String)>,
) -> AppResult<Vec<Order>> {
    let (ts, id) = before.unwrap_or((i64::MAX / 2, "\u{10FFFF}".into()));
    let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE (created_at, id) < (?1, ?2)");
    let mut args = vec![num(ts), text(&id), num(i64::from(limit))];
    if let Some(u) = user_id {
        args.push(text(u.as_str()));
        sql.push_str(&format!(" AND user_id = ?{}", args.len()));
    }
    if let Some(st) = state {
        sql.push_str(&format!(" AND {}", states_in("state", &[st], &mut args)));
    }
    if owed_only {
        sql.push_str(" AND owed > 0");
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?3");
    orders(db, db.stmt(&sql, &args)?).await
}

/// Forgives everything the user owes, with a zero-amount ledger row and an
/// audit entry that say so; the number of credits cleared (0 if none).
/// Invariant: `users.owed` and `SUM(orders.owed)` both go to zero together;
/// balances do not change.
pub async fn clear_owed(db: &Db, user_id: &UserId, reason: &str, now: i64) -> AppResult<i64> {
    let before = db
        .first::<Value>(
            db.stmt("SELECT COALESCE(SUM(owed), 0) AS owed FROM orders WHERE user_id = ?1 AND owed > 0", &[text(user_id.as_str())])?,
        )
        .await?
        .and_then(|r| r.get("owed").and_then(Value::as_i64))
        .unwrap_or(0);
    let args = [text(user_id.as_str()), text(reason), num(now)];
    let changes = db
        .batch(vec![
            db.stmt("UPDATE users SET owed = 0, updated_at = ?3 WHERE id = ?1 AND owed > 0", &args)?,
            db.stmt(
                "INSERT INTO ledger (user_id, kind, amount, balance_after, reason, actor, created_at) \
                 SELECT id, 'adjust', 0, credits, \
                   'owed cleared (' || (SELECT COALESCE(SUM(owed), 0) FROM orders WHERE user_id = ?1) || ' credits): ' || ?2, 'admin', ?3 \
                 FROM users WHERE id = ?1 AND changes() = 1",
                &args,
            )?,
            db.stmt(
                "INSERT INTO audit_log (actor, action, target, detail, created_at) \
                 SELECT 'admin', 'owed.clear', ?1, (SELECT COALESCE(SUM(owed), 0) FROM orders WHERE user_id = ?1) || ' credits (' || ?2 || ')', ?3 \
                 WHERE changes() = 1",
                &args,
            )?,
            db.stmt(
                "UPDATE orders SET owed_cleared = owed_cleared + owed, owed = 0, updated_at = ?3 WHERE user_id = ?1 AND owed > 0 AND changes() = 1",
                &args,
            )?,
        ])
        .await?;
    Ok(if changes.first() == Some(&1) { before } else { 0 })
}

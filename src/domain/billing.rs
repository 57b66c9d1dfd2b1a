//! Buying credits: the packs on sale (`CREDIT_PACKS`), the order and its state
//! machine, and the rule that turns a refund or a dispute into credits taken
//! back (the store applies the same rule in SQL, inside one transaction).

use super::error::{AppError, AppResult};
use super::ids::{OrderId, UserId};
use super::time::rfc3339;
use serde::Serialize;
use serde_json::{json, Value};

/// How long a Checkout Session stays open (Stripe allows 30 min to 24 h).
pub const CHECKOUT_TTL_S: i64 = 3600;
/// An open order is offered again (a double click, a second tab, coming back
/// from "cancel") only while at least this much of its session is left.
pub const REUSE_MARGIN_S: i64 = 900;
/// Who creates an order's Checkout Session holds it this long; a request that
/// died holding it is taken over after that (with the same Idempotency-Key).
pub const SESSION_LEASE_MS: i64 = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditPack {
    pub id: String,
    pub credits: i64,
    /// In the currency's smallest unit (cents), as Stripe takes it.
    pub amount: i64,
    /// ISO 4217, lowercase.
    pub currency: String,
}

const MAX_PACKS: usize = 20;
const MAX_PACK_CREDITS: i64 = 10_000_000;
/// Stripe's largest amount (8 digits).
const MAX_AMOUNT: i64 = 99_999_999;

/// Parses `CREDIT_PACKS`: a JSON array of `{"id","credits","amount","currency"}`.
/// The problem, when there is one, names the pack and the field, never a value.
pub fn parse_packs(text: &str) -> Result<Vec<CreditPack>, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|_| "must be a JSON array of {\"id\",\"credits\",\"amount\",\"currency\"}".to_string())?;
    let list = v.as_array().ok_or("must be a JSON array of {\"id\",\"credits\",\"amount\",\"currency\"}")?;
    if list.is_empty() || list.len() > MAX_PACKS {
        return Err(format!("must list 1 to {MAX_PACKS} packs"));
    }
    let mut packs: Vec<CreditPack> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let n = i + 1;
        let obj = item.as_object().ok_or_else(|| format!("pack {n} is not an object"))?;
        if let Some(unknown) = obj.keys().find(|k| !["id", "credits", "amount", "currency"].contains(&k.as_str())) {
            return Err(format!("pack {n} has an unknown field '{unknown}' (allowed: id, credits, amount, currency)"));
        }
        let id = obj.get("id").and_then(Value::as_str).unwrap_or("");
        if !(1..=32).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(format!("pack {n}: 'id' must be 1 to 32 characters of a-z, 0-9, - and _"));
        }
        if packs.iter().any(|p| p.id == id) {
            return Err(format!("pack {n}: 'id' is used twice"));
        }
        let number = |name: &str, max: i64| {
            obj.get(name)
                .and_then(Value::as_i64)
                .filter(|x| (1..=max).contains(x))
                .ok_or_else(|| format!("pack {n}: '{name}' must be a whole number from 1 to {max}"))
        };
        let credits = number("credits", MAX_PACK_CREDITS)?;
        let amount = number("amount", MAX_AMOUNT)?;
        let currency = obj.get("currency").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("pack {n}: 'currency' must be a three-letter ISO code such as usd"));
        }
        packs.push(CreditPack { id: id.to_string(), credits, amount, currency });
    }
    Ok(packs)
}

/// The settings of buying credits; absent when none of them is set.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub secret_key: String,
    pub webhook_secret: String,
    /// Stripe's API origin, without a trailing slash (a local stand-in in tests).
    pub api_base: String,
    pub packs: Vec<CreditPack>,
}

impl BillingConfig {
    pub fn pack(&self, id: &str) -> Option<&CreditPack> {
        self.packs.iter().find(|p| p.id == id)
    }
    /// A test-mode key (`sk_test_…`, `rk_test_…`): no real money moves.
    pub fn test_mode(&self) -> bool {
        self.secret_key.contains("_test_")
    }
}

/// The settings that turn buying credits on; all three or none.
pub const BILLING_SETTINGS: [&str; 3] = ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CREDIT_PACKS"];

/// Reads the billing settings through `value` (trimmed, empty as absent):
/// `None` when none of [`BILLING_SETTINGS`] is set, else the settings or the
/// problems, each naming its setting (never its value).
pub fn load_billing(
    value: &dyn Fn(&str) -> Option<String>,
    origin_problem: &dyn Fn(&str) -> Option<String>,
) -> (Option<BillingConfig>, Vec<(&'static str, String)>) {
    let mut problems = Vec::new();
    if BILLING_SETTINGS.iter().all(|name| value(name).is_none()) {
        return (None, problems);
    }
    let mut need = |name: &'static str, ok: &dyn Fn(&str) -> bool, what: &str| match value(name) {
        None => {
            problems.push((name, "missing: buying credits needs STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and CREDIT_PACKS".to_string()));
            String::new()
        }
        Some(v) if !ok(&v) => {
            problems.push((name, what.to_string()));
            String::new()
        }
        Some(v) => v,
    };
    let no_space = |v: &str| v.len() >= 12 && !v.contains(char::is_whitespace);
    let secret_key = need(
        "STRIPE_SECRET_KEY",
        &|v| (v.starts_with("sk_") || v.starts_with("rk_")) && no_space(v),
        "must be a Stripe secret key (sk_… or rk_…)",
    );
    let webhook_secret = need(
        "STRIPE_WEBHOOK_SECRET",
        &|v| v.starts_with("whsec_") && no_space(v),
        "must be the webhook endpoint's signing secret (whsec_…)",
    );
    let packs_text = need("CREDIT_PACKS", &|_| true, "");
    let packs = if packs_text.is_empty() {
        Vec::new()
    } else {
        parse_packs(&packs_text).unwrap_or_else(|p| {
            problems.push(("CREDIT_PACKS", p));
            Vec::new()
        })
    };
    let api_base = value("STRIPE_API_BASE").map(|v| v.trim_end_matches('/').to_string()).unwrap_or_else(|| "https://api.stripe.com".into());
    if let Some(p) = origin_problem(&api_base) {
        problems.push(("STRIPE_API_BASE", p));
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    (Some(BillingConfig { secret_key, webhook_secret, api_base, packs }), problems)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Recorded; its Checkout Session is being created.
    Pending,
    /// The person has a Checkout URL; nothing paid yet.
    Open,
    /// Checkout completed with a payment still on its way (a bank debit).
    Processing,
    /// Stripe confirmed the payment; the credits were granted (once).
    Paid,
    /// Stripe refused to start the checkout, could not be reached, or the payment failed.
    Failed,
    /// The Checkout Session expired unpaid.
    Expired,
}

impl OrderState {
    pub const ALL: [OrderState; 6] =
        [OrderState::Pending, OrderState::Open, OrderState::Processing, OrderState::Paid, OrderState::Failed, OrderState::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Open => "open",
            OrderState::Processing => "processing",
            OrderState::Paid => "paid",
            OrderState::Failed => "failed",
            OrderState::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<OrderState> {
        OrderState::ALL.into_iter().find(|state| state.as_str() == s)
    }
    /// The `state=` filter of order lists: absent or empty means every state.
    pub fn parse_filter(value: Option<&str>) -> AppResult<Option<OrderState>> {
        match value.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => OrderState::parse(s)
                .map(Some)
                .ok_or_else(|| AppError::validation_allowed("state", "Unknown state.", &OrderState::ALL.map(OrderState::as_str))),
        }
    }
}

/// A state change, applied only to an order in one of `from` (a conditional
/// write: whoever applies it first wins; the others change nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTransition {
    pub from: &'static [OrderState],
    pub to: OrderState,
}

impl OrderTransition {
    /// Stripe gave us a Checkout URL.
    pub const OPEN: OrderTransition = OrderTransition { from: &[OrderState::Pending], to: OrderState::Open };
    /// Checkout completed, the money is still on its way.
    pub const AWAIT: OrderTransition = OrderTransition { from: &[OrderState::Pending, OrderState::Open], to: OrderState::Processing };
    /// Stripe says the money arrived: grant. Money that arrived wins over our
    /// own closing of the order (an expiry or failure we recorded first), so
    /// every state but `paid` may be granted — and `paid` only once.
    pub const GRANT: OrderTransition = OrderTransition {
        from: &[OrderState::Pending, OrderState::Open, OrderState::Processing, OrderState::Failed, OrderState::Expired],
        to: OrderState::Paid,
    };
    /// Stripe refused, was unreachable, or the delayed payment failed.
    pub const FAIL: OrderTransition =
        OrderTransition { from: &[OrderState::Pending, OrderState::Open, OrderState::Processing], to: OrderState::Failed };
    /// The session expired unpaid (or is too close to expiry to offer again).
    pub const EXPIRE: OrderTransition = OrderTransition { from: &[OrderState::Pending, OrderState::Open], to: OrderState::Expired };
}

/// An order as stored (typed D1 row).
#[derive(Debug, Clone)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub pack_id: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub state: OrderState,
    pub checkout_session_id: Option<String>,
    pub checkout_url: Option<String>,
    pub payment_intent_id: Option<String>,
    pub failure: Option<String>,
    /// Unix ms when the Checkout Session closes.
    pub expires_at: Option<i64>,
    pub lease_until: Option<i64>,
    /// Money refunded so far (cumulative, smallest unit) and disputed.
    pub refunded_amount: i64,
    pub disputed_amount: i64,
    /// Credits taken back so far (from the balance or recorded as owed), in
    /// total and for refunds alone.
    pub reversed_credits: i64,
    pub refund_credits: i64,
    /// Credits that could not be taken back because they were spent.
    pub owed: i64,
    pub owed_cleared: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub paid_at: Option<i64>,
    pub closed_at: Option<i64>,
}

impl Order {
    /// The order from its D1 row (a JSON object of the columns); `None` when a
    /// column is missing or not what it must be. Read by hand: a derived
    /// deserializer for 23 columns costs more wasm than this.
    pub fn from_row(row: &Value) -> Option<Order> {
        let int = |k: &str| row.get(k).and_then(Value::as_i64);
        let opt_int = |k: &str| match row.get(k) {
            Some(Value::Null) | None => Some(None),
            Some(v) => v.as_i64().map(Some),
        };
        let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
        let opt_text = |k: &str| match row.get(k) {
            Some(Value::Null) | None => Some(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())),
        };
        Some(Order {
            id: OrderId::parse(row.get("id")?.as_str()?)?,
            user_id: UserId::parse(row.get("user_id")?.as_str()?)?,
            pack_id: text("pack_id")?,
            credits: int("credits")?,
            amount: int("amount")?,
            currency: text("currency")?,
            state: OrderState::parse(row.get("state")?.as_str()?)?,
            checkout_session_id: opt_text("checkout_session_id")?,
            checkout_url: opt_text("checkout_url")?,
            payment_intent_id: opt_text("payment_intent_id")?,
            failure: opt_text("failure")?,
            expires_at: opt_int("expires_at")?,
            lease_until: opt_int("lease_until")?,
            refunded_amount: int("refunded_amount")?,
            disputed_amount: int("disputed_amount")?,
            reversed_credits: int("reversed_credits")?,
            refund_credits: int("refund_credits")?,
            owed: int("owed")?,
            owed_cleared: int("owed_cleared")?,
            created_at: int("created_at")?,
            updated_at: int("updated_at")?,
            paid_at: opt_int("paid_at")?,
            closed_at: opt_int("closed_at")?,
        })
    }

    /// The order as its owner sees it (`admin` adds the ids that join it to Stripe).
    pub fn view(&self, admin: bool) -> Value {
        let at = |t: Option<i64>| t.map(rfc3339);
        let mut v = json!({
            "id": self.id, "state": self.state.as_str(), "pack": self.pack_id, "credits": self.credits,
            "amount": self.amount, "currency": self.currency,
            // Only an open order can still be paid: its URL lets the page send the person back.
            "url": if self.state == OrderState::Open { self.checkout_url.clone() } else { None },
            "failure": self.failure, "refunded_amount": self.refunded_amount, "disputed_amount": self.disputed_amount,
            "credits_reversed": self.reversed_credits, "owed": self.owed,
            "created_at": rfc3339(self.created_at), "updated_at": rfc3339(self.updated_at),
            "paid_at": at(self.paid_at), "closed_at": at(self.closed_at),
        });
        if let (true, Some(o)) = (admin, v.as_object_mut()) {
            o.insert("user_id".into(), json!(self.user_id));
            o.insert("checkout_session_id".into(), json!(self.checkout_session_id));
            o.insert("payment_intent_id".into(), json!(self.payment_intent_id));
            o.insert("owed_cleared".into(), json!(self.owed_cleared));
        }
        v
    }
}

/// What a refund or dispute takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalKind {
    /// `money` is the charge's cumulative `amount_refunded`.
    Refund,
    /// `money` is the disputed amount.
    Dispute,
}

impl ReversalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReversalKind::Refund => "refund",
            ReversalKind::Dispute => "dispute",
        }
    }
}

/// Credits a reversal adds to what the order has already given back: the
/// order's credits in proportion to the money (rounded down, so a partial
/// refund never takes more than it paid for), less what earlier refunds of the
/// same charge already took (`amount_refunded` is cumulative), and never more
/// than the order granted in all. `store::orders::reverse` computes exactly
/// this in SQL, inside the transaction that applies it.
pub fn reversal_credits(order: &Order, kind: ReversalKind, money: i64) -> i64 {
    if order.amount <= 0 {
        return 0;
    }
    let proportional = (order.credits.saturating_mul(money.max(0)) / order.amount).min(order.credits);
    let wanted = match kind {
        ReversalKind::Refund => proportional - order.refund_credits,
        ReversalKind::Dispute => proportional,
    };
    wanted.min(order.credits - order.reversed_credits).max(0)
}

/// Splits credits to take back into what the balance can give and what is
/// owed (the balance never goes below zero).
pub fn split_reversal(credits: i64, balance: i64) -> (i64, i64) {
    let taken = credits.min(balance.max(0));
    (taken, credits - taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKS: &str = r#"[{"id":"starter","credits":100,"amount":500,"currency":"usd"},
                            {"id":"pro","credits":1200,"amount":5000,"currency":"EUR"}]"#;

    #[test]
    fn packs_parse_and_currency_is_lowercased() {
        let packs = parse_packs(PACKS).unwrap();
        assert_eq!(packs.len(), 2);
        assert_eq!(packs[0], CreditPack { id: "starter".into(), credits: 100, amount: 500, currency: "usd".into() });
        assert_eq!(packs[1].currency, "eur");
    }

    #[test]
    fn bad_packs_name_the_pack_and_field_never_the_value() {
        let cases = [
            ("", "JSON array"),
            ("{}", "JSON array"),
            ("[]", "1 to 20"),
            (r#"[1]"#, "pack 1 is not an object"),
            (r#"[{"id":"a","credits":1,"amount":1,"currency":"usd","price":9}]"#, "unknown field 'price'"),
            (r#"[{"id":"Bad Id","credits":1,"amount":1,"currency":"usd"}]"#, "pack 1: 'id'"),
            (
                r#"[{"id":"a","credits":1,"amount":1,"currency":"usd"},{"id":"a","credits":2,"amount":2,"currency":"usd"}]"#,
                "pack 2: 'id' is used twice",
            ),
            (r#"[{"id":"a","credits":0,"amount":1,"currency":"usd"}]"#, "pack 1: 'credits'"),
            (r#"[{"id":"a","credits":1.5,"amount":1,"currency":"usd"}]"#, "pack 1: 'credits'"),
            (r#"[{"id":"a","credits":1,"amount":123456789,"currency":"usd"}]"#, "pack 1: 'amount'"),
            (r#"[{"id":"a","credits":1,"amount":"5","currency":"usd"}]"#, "pack 1: 'amount'"),
            (r#"[{"id":"a","credits":1,"amount":5,"currency":"dollars"}]"#, "pack 1: 'currency'"),
        ];
        for (text, expected) in cases {
            let problem = parse_packs(text).unwrap_err();
            assert!(problem.contains(expected), "{text}: {problem}");
            assert!(!problem.contains("123456789") && !problem.contains("dollars") && !problem.contains("Bad Id"));
        }
    }

    fn order(credits: i64, amount: i64) -> Order {
        Order {
            id: OrderId::new(&[1; 16]),
            user_id: UserId::new(&[2; 16]),
            pack_id: "p".into(),
            credits,
            amount,
            currency: "usd".into(),
            state: OrderState::Paid,
            checkout_session_id: Some("cs_test_1".into()),
            checkout_url: None,
            payment_intent_id: Some("pi_1".into()),
            failure: None,
            expires_at: None,
            lease_until: None,
            refunded_amount: 0,
            disputed_amount: 0,
            reversed_credits: 0,
            refund_credits: 0,
            owed: 0,
            owed_cleared: 0,
            created_at: 0,
            updated_at: 0,
            paid_at: Some(0),
            closed_at: None,
        }
    }

    #[test]
    fn refunds_take_back_in_proportion_cumulatively() {
        let mut o = order(100, 500);
        assert_eq!(reversal_credits(&o, ReversalKind::Refund, 250), 50);
        o.refund_credits = 50;
        o.reversed_credits = 50;
        // The same cumulative amount again (a redelivery) takes nothing more.
        assert_eq!(reversal_credits(&o, ReversalKind::Refund, 250), 0);
        // An older, smaller cumulative amount arriving late takes nothing.
        assert_eq!(reversal_credits(&o, ReversalKind::Refund, 100), 0);
        // The rest of the money: the rest of the credits.
        assert_eq!(reversal_credits(&o, ReversalKind::Refund, 500), 50);
        // Rounded down: a cent buys no credit back.
        assert_eq!(reversal_credits(&order(100, 500), ReversalKind::Refund, 4), 0);
        assert_eq!(reversal_credits(&order(100, 500), ReversalKind::Refund, 5), 1);
        // Never more than was granted.
        assert_eq!(reversal_credits(&order(100, 500), ReversalKind::Refund, 900), 100);
    }

    #[test]
    fn a_dispute_after_a_partial_refund_takes_only_the_rest() {
        let mut o = order(100, 500);
        o.refund_credits = 40;
        o.reversed_credits = 40;
        assert_eq!(reversal_credits(&o, ReversalKind::Dispute, 500), 60);
        assert_eq!(reversal_credits(&o, ReversalKind::Dispute, 300), 60);
        assert_eq!(reversal_credits(&o, ReversalKind::Dispute, 100), 20);
        o.reversed_credits = 100;
        assert_eq!(reversal_credits(&o, ReversalKind::Dispute, 500), 0);
    }

    #[test]
    fn what_was_spent_is_owed() {
        assert_eq!(split_reversal(100, 30), (30, 70));
        assert_eq!(split_reversal(100, 300), (100, 0));
        assert_eq!(split_reversal(10, 0), (0, 10));
        assert_eq!(split_reversal(0, 5), (0, 0));
    }

    #[test]
    fn the_grant_accepts_every_state_but_paid() {
        assert!(!OrderTransition::GRANT.from.contains(&OrderState::Paid));
        for s in OrderState::ALL.into_iter().filter(|s| *s != OrderState::Paid) {
            assert!(OrderTransition::GRANT.from.contains(&s), "{s:?}");
        }
        // Nothing closes a paid order.
        for t in [OrderTransition::FAIL, OrderTransition::EXPIRE, OrderTransition::AWAIT, OrderTransition::OPEN] {
            assert!(!t.from.contains(&OrderState::Paid));
        }
    }

    #[test]
    fn rows_decode_and_a_bad_row_is_refused() {
        let row = serde_json::json!({
            "id": OrderId::new(&[1; 16]), "user_id": UserId::new(&[2; 16]), "pack_id": "small", "credits": 10, "amount": 500,
            "currency": "usd", "state": "processing", "checkout_session_id": "cs_test_1", "checkout_url": null,
            "payment_intent_id": "pi_1", "failure": null, "expires_at": 1_800_000_000_000_i64, "lease_until": null,
            "refunded_amount": 0, "disputed_amount": 0, "reversed_credits": 0, "refund_credits": 0, "owed": 0, "owed_cleared": 0,
            "created_at": 1, "updated_at": 2, "paid_at": null, "closed_at": null
        });
        let o = Order::from_row(&row).unwrap();
        assert_eq!(o.state, OrderState::Processing);
        assert_eq!(o.checkout_session_id.as_deref(), Some("cs_test_1"));
        assert_eq!(o.checkout_url, None);
        assert_eq!(o.expires_at, Some(1_800_000_000_000));
        for (k, bad) in [("state", serde_json::json!("refunded")), ("credits", serde_json::json!("10")), ("id", serde_json::json!("tsk_x"))]
        {
            let mut r = row.clone();
            r[k] = bad;
            assert!(Order::from_row(&r).is_none(), "{k}");
        }
        let mut r = row.clone();
        r.as_object_mut().unwrap().remove("owed");
        assert!(Order::from_row(&r).is_none());
    }

    #[test]
    fn views_show_the_url_only_while_open_and_stripe_ids_only_to_operators() {
        let mut o = order(100, 500);
        o.checkout_url = Some("https://checkout.stripe.com/x".into());
        assert_eq!(o.view(false)["url"], Value::Null);
        assert!(o.view(false).get("checkout_session_id").is_none());
        assert_eq!(o.view(true)["payment_intent_id"], "pi_1");
        o.state = OrderState::Open;
        assert_eq!(o.view(false)["url"], "https://checkout.stripe.com/x");
        assert_eq!(OrderState::parse_filter(Some("nope")).unwrap_err().status(), 422);
        assert_eq!(OrderState::parse_filter(Some("paid")).unwrap(), Some(OrderState::Paid));
    }

    #[test]
    fn billing_is_off_until_set_and_then_needs_all_three() {
        use std::collections::HashMap;
        let load = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let origin = |v: &str| (!v.starts_with("https://")).then(|| "must start with https://".to_string());
            load_billing(&|k| map.get(k).cloned(), &origin)
        };
        let (off, problems) = load(&[("STRIPE_API_BASE", "https://api.stripe.com")]);
        assert!(off.is_none() && problems.is_empty());
        let (on, problems) =
            load(&[("STRIPE_SECRET_KEY", "sk_test_0123456789"), ("STRIPE_WEBHOOK_SECRET", "whsec_0123456789"), ("CREDIT_PACKS", PACKS)]);
        assert!(problems.is_empty(), "{problems:?}");
        let on = on.unwrap();
        assert_eq!(on.api_base, "https://api.stripe.com");
        assert!(on.test_mode());
        assert_eq!(on.pack("pro").unwrap().credits, 1200);
        let (none, problems) = load(&[("STRIPE_SECRET_KEY", "sk_live_0123456789")]);
        assert!(none.is_none());
        let names: Vec<_> = problems.iter().map(|p| p.0).collect();
        assert_eq!(names, vec!["STRIPE_WEBHOOK_SECRET", "CREDIT_PACKS"]);
        let (_, problems) = load(&[
            ("STRIPE_SECRET_KEY", "pk_live_0123456789"),
            ("STRIPE_WEBHOOK_SECRET", "secret-0123456789"),
            ("CREDIT_PACKS", "[{}]"),
            ("STRIPE_API_BASE", "http://127.0.0.1:1"),
        ]);
        let names: Vec<_> = problems.iter().map(|p| p.0).collect();
        assert_eq!(names, vec!["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CREDIT_PACKS", "STRIPE_API_BASE"]);
        assert!(!format!("{problems:?}").contains("pk_live_0123456789"));
    }
}

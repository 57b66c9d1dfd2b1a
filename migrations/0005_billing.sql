-- Buying credits with Stripe Checkout: orders, the Stripe events we have seen,
-- and the refunds and disputes that took credits back.
-- Money rules (see src/adapters/store/orders.rs):
--   users.credits = SUM(ledger.amount) of the user, still and always;
--   users.owed    = SUM(orders.owed) of the user (credits a refund or dispute
--                   could not take back because they were already spent);
--   an order grants its credits once (its state moves to 'paid' once), and
--   each refund or dispute takes back once (order_reversals.key).
-- Purchases are ledger rows of kind 'grant' (reason 'purchase <order>'),
-- reversals of kind 'adjust' (reason 'refund <id>' / 'dispute <id>'), so the
-- ledger's CHECK on kind stays as it is.

ALTER TABLE users ADD COLUMN owed INTEGER NOT NULL DEFAULT 0 CHECK (owed >= 0);

CREATE TABLE orders (
  id                   TEXT PRIMARY KEY,
  user_id              TEXT NOT NULL REFERENCES users (id),
  pack_id              TEXT NOT NULL,
  credits              INTEGER NOT NULL CHECK (credits > 0),
  amount               INTEGER NOT NULL CHECK (amount > 0),
  currency             TEXT NOT NULL,
  state                TEXT NOT NULL CHECK (state IN ('pending','open','processing','paid','failed','expired')),
  checkout_session_id  TEXT,
  checkout_url         TEXT,
  payment_intent_id    TEXT,
  failure              TEXT,
  expires_at           INTEGER,
  lease_until          INTEGER,
  refunded_amount      INTEGER NOT NULL DEFAULT 0,
  disputed_amount      INTEGER NOT NULL DEFAULT 0,
  reversed_credits     INTEGER NOT NULL DEFAULT 0 CHECK (reversed_credits >= 0 AND reversed_credits <= credits),
  refund_credits       INTEGER NOT NULL DEFAULT 0 CHECK (refund_credits >= 0 AND refund_credits <= reversed_credits),
  owed                 INTEGER NOT NULL DEFAULT 0 CHECK (owed >= 0),
  owed_cleared         INTEGER NOT NULL DEFAULT 0 CHECK (owed_cleared >= 0),
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL,
  paid_at              INTEGER,
  closed_at            INTEGER
);
-- A double click is one order: one unfinished checkout per user and pack.
CREATE UNIQUE INDEX orders_unfinished_pack ON orders (user_id, pack_id) WHERE state IN ('pending','open');
-- Events find their order by the ids we stored, never by metadata.
CREATE UNIQUE INDEX orders_session ON orders (checkout_session_id) WHERE checkout_session_id IS NOT NULL;
CREATE UNIQUE INDEX orders_payment_intent ON orders (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_owed ON orders (user_id) WHERE owed > 0;
-- A purchase is granted at most once, whatever else guards it.
CREATE UNIQUE INDEX ledger_purchase ON ledger (reason) WHERE kind = 'grant' AND actor = 'stripe';

-- Every Stripe event id we accepted (signature and timestamp checked):
-- a redelivery finds its id here and changes nothing.
CREATE TABLE stripe_events (
  id           TEXT PRIMARY KEY,
  type         TEXT NOT NULL,
  order_id     TEXT,
  received_at  INTEGER NOT NULL
);

-- Each refund or dispute that took credits back, once per key:
-- 'refund:<charge>:<cumulative amount_refunded>' or 'dispute:<dispute>'.
CREATE TABLE order_reversals (
  key         TEXT PRIMARY KEY,
  order_id    TEXT NOT NULL REFERENCES orders (id),
  kind        TEXT NOT NULL CHECK (kind IN ('refund','dispute')),
  stripe_id   TEXT NOT NULL,
  amount      INTEGER NOT NULL,
  credits     INTEGER NOT NULL CHECK (credits > 0),
  taken       INTEGER NOT NULL CHECK (taken >= 0),
  owed        INTEGER NOT NULL CHECK (owed >= 0),
  created_at  INTEGER NOT NULL,
  CHECK (taken + owed = credits)
);
CREATE INDEX order_reversals_order ON order_reversals (order_id);

-- Users, their API keys (hashes only), tasks, and the credit ledger.
-- Money rule: users.credits always equals the sum of that user's ledger amounts.

CREATE TABLE users (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  credits     INTEGER NOT NULL CHECK (credits >= 0),
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE INDEX users_created ON users (created_at DESC, id DESC);

CREATE TABLE api_keys (
  key_hash    TEXT PRIMARY KEY,
  user_id     TEXT NOT NULL REFERENCES users (id),
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE tasks (
  id                TEXT PRIMARY KEY,
  user_id           TEXT NOT NULL REFERENCES users (id),
  model             TEXT NOT NULL,
  prompt            TEXT NOT NULL,
  aspect_ratio      TEXT,
  resolution        TEXT,
  output_format     TEXT,
  inputs            TEXT NOT NULL DEFAULT '[]',
  results           TEXT NOT NULL DEFAULT '[]',
  state             TEXT NOT NULL CHECK (state IN ('queued','submitted','generating','succeeded','failed')),
  credits           INTEGER NOT NULL CHECK (credits >= 0),
  error_code        TEXT,
  error_message     TEXT,
  provider_task_id  TEXT,
  callback_token    TEXT NOT NULL,
  idempotency_key   TEXT,
  request_hash      TEXT,
  attempts          INTEGER NOT NULL DEFAULT 0,
  next_attempt_at   INTEGER,
  lease_until       INTEGER,
  checked_at        INTEGER,
  submitted_at      INTEGER,
  deadline_at       INTEGER,
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  completed_at      INTEGER
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX tasks_provider ON tasks (provider_task_id) WHERE provider_task_id IS NOT NULL;
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_user_state ON tasks (user_id, state, created_at DESC, id DESC);
CREATE INDEX tasks_state_created ON tasks (state, created_at, id);

CREATE TABLE ledger (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id        TEXT NOT NULL REFERENCES users (id),
  task_id        TEXT,
  kind           TEXT NOT NULL CHECK (kind IN ('grant','adjust','reserve','capture','release')),
  amount         INTEGER NOT NULL,
  balance_after  INTEGER NOT NULL CHECK (balance_after >= 0),
  reason         TEXT,
  actor          TEXT NOT NULL,
  created_at     INTEGER NOT NULL
);
-- Each task is reserved, captured and released at most once.
CREATE UNIQUE INDEX ledger_task_kind ON ledger (task_id, kind) WHERE task_id IS NOT NULL;
CREATE INDEX ledger_user ON ledger (user_id, id DESC);

-- Per-user request counts per minute (rate limit held in D1, not in isolate memory).
CREATE TABLE rate_windows (
  user_id       TEXT NOT NULL,
  window_start  INTEGER NOT NULL,
  count         INTEGER NOT NULL,
  PRIMARY KEY (user_id, window_start)
);

-- Every create call we make to Kie, for the account-wide 20-per-10-s limit.
CREATE TABLE kie_submits (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  at       INTEGER NOT NULL,
  task_id  TEXT NOT NULL
);
CREATE INDEX kie_submits_at ON kie_submits (at);

-- Admin actions that are not credit movements (those are in the ledger).
CREATE TABLE audit_log (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  actor       TEXT NOT NULL,
  action      TEXT NOT NULL,
  target      TEXT NOT NULL,
  detail      TEXT,
  created_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target, id DESC);

-- What each scheduled run did.
CREATE TABLE cron_runs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at   INTEGER NOT NULL,
  finished_at  INTEGER NOT NULL,
  summary      TEXT NOT NULL
);

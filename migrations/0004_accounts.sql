-- People who sign in with OpenID Connect: their identities, browser sessions,
-- sign-ins in flight, new people waiting for the human check, the per-IP limit
-- on new accounts, and names for self-service API keys.
-- Cookie tokens are stored only as SHA-256 hashes; client IPs only as keyed hashes.

-- One account per (issuer, subject): the provider's stable id for a person.
CREATE TABLE identities (
  issuer      TEXT NOT NULL,
  subject     TEXT NOT NULL,
  user_id     TEXT NOT NULL REFERENCES users (id),
  email       TEXT,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_user ON identities (user_id);

-- Browser sessions: 30 days after the last refresh (sliding).
CREATE TABLE sessions (
  id_hash       TEXT PRIMARY KEY,
  user_id       TEXT NOT NULL REFERENCES users (id),
  created_at    INTEGER NOT NULL,
  refreshed_at  INTEGER NOT NULL,
  expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- A sign-in between /auth/login and /auth/callback, keyed by the hash of the
-- pre-auth cookie's value; deleted when the callback reads it (used once).
CREATE TABLE login_attempts (
  id_hash        TEXT PRIMARY KEY,
  state          TEXT NOT NULL,
  nonce          TEXT NOT NULL,
  code_verifier  TEXT NOT NULL,
  return_to      TEXT NOT NULL,
  created_at     INTEGER NOT NULL,
  expires_at     INTEGER NOT NULL
);
CREATE INDEX login_attempts_expires ON login_attempts (expires_at);

-- A new person whose ID token checked out, waiting for the human check.
CREATE TABLE pending_signups (
  id_hash     TEXT PRIMARY KEY,
  issuer      TEXT NOT NULL,
  subject     TEXT NOT NULL,
  email       TEXT,
  name        TEXT NOT NULL,
  return_to   TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL
);
CREATE INDEX pending_signups_expires ON pending_signups (expires_at);

-- New accounts per client IP (keyed hash) per fixed window.
CREATE TABLE signup_windows (
  ip_hash       TEXT NOT NULL,
  window_start  INTEGER NOT NULL,
  count         INTEGER NOT NULL,
  PRIMARY KEY (ip_hash, window_start)
);

-- Self-service keys have a name and a hint (their first characters).
ALTER TABLE api_keys ADD COLUMN name TEXT;
ALTER TABLE api_keys ADD COLUMN hint TEXT;

-- Monitoring: hourly counters behind the operator dashboard, per-minute event
-- counters behind the alerts, samples of the queue and the Kie balance, and the
-- alerts themselves. The scheduled job prunes every table here (8 days of
-- counters and samples, 30 days of resolved alerts).

-- Finished tasks by the hour they finished in, model, outcome ('succeeded' or
-- the failure code) and latency bucket (time from create to finish, see
-- domain/monitor/stats.rs). Rolled up from tasks by the cron.
CREATE TABLE task_hours (
  hour     INTEGER NOT NULL,
  model    TEXT NOT NULL,
  outcome  TEXT NOT NULL,
  bucket   INTEGER NOT NULL,
  tasks    INTEGER NOT NULL,
  credits  INTEGER NOT NULL,
  PRIMARY KEY (hour, model, outcome, bucket)
) WITHOUT ROWID;

-- Calls to Kie by hour, operation (create, record, credit), result (Kie's
-- code, 'http NNN', 'timeout', 'unreachable') and latency bucket.
CREATE TABLE kie_calls (
  hour    INTEGER NOT NULL,
  op      TEXT NOT NULL,
  result  TEXT NOT NULL,
  bucket  INTEGER NOT NULL,
  calls   INTEGER NOT NULL,
  PRIMARY KEY (hour, op, result, bucket)
) WITHOUT ROWID;

-- Events counted per minute: callbacks rejected by cause, D1 and R2 errors,
-- results that could not be copied, browser error reports.
CREATE TABLE monitor_events (
  minute  INTEGER NOT NULL,
  kind    TEXT NOT NULL,
  count   INTEGER NOT NULL,
  PRIMARY KEY (minute, kind)
) WITHOUT ROWID;

-- One row per cron run: unfinished tasks and the Kie balance (NULL when it
-- could not be read).
CREATE TABLE monitor_samples (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  at                INTEGER NOT NULL,
  queued            INTEGER NOT NULL,
  at_kie            INTEGER NOT NULL,
  oldest_queued_ms  INTEGER,
  overdue           INTEGER NOT NULL,
  kie_balance       REAL
);
CREATE INDEX monitor_samples_at ON monitor_samples (at);

-- How far finished tasks have been rolled up into task_hours (Unix ms). It
-- starts 8 days back, so the first run rolls up at most the dashboard's window.
CREATE TABLE monitor_state (
  key    TEXT PRIMARY KEY,
  value  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO monitor_state (key, value) VALUES ('tasks_rolled_up_to', (CAST(strftime('%s', 'now') AS INTEGER) - 8 * 86400) * 1000);

-- One row per alert: opened when its condition starts, resolved when it has
-- been clear long enough. start_sent_at and end_sent_at record the delivered
-- messages (a receiver that is down is retried by the next run, sending_until
-- keeps two runs from sending the same message).
CREATE TABLE alerts (
  id                TEXT PRIMARY KEY,
  condition         TEXT NOT NULL,
  state             TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
  message           TEXT NOT NULL,
  resolved_message  TEXT,
  started_at        INTEGER NOT NULL,
  clear_since       INTEGER,
  resolved_at       INTEGER,
  start_sent_at     INTEGER,
  end_sent_at       INTEGER,
  sending_until     INTEGER,
  attempts          INTEGER NOT NULL DEFAULT 0,
  last_error        TEXT
);
-- At most one open alert per condition.
CREATE UNIQUE INDEX alerts_open_condition ON alerts (condition) WHERE state = 'open';
CREATE INDEX alerts_started ON alerts (started_at);
CREATE INDEX alerts_unsent ON alerts (started_at) WHERE start_sent_at IS NULL OR end_sent_at IS NULL;

-- Finished tasks by completion time: the rollup and the alert rules read ranges of it.
CREATE INDEX tasks_completed ON tasks (completed_at) WHERE completed_at IS NOT NULL;

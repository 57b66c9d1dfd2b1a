//! Monitoring, the pure part: its settings and the Kie cost table
//! (`config`), latency histograms and the isolate's counters (`stats`), the
//! alert rules and the life of an alert (`alerts`), the messages sent to a
//! receiver (`notify`), the dashboard's aggregates (`metrics`), and reports
//! from browsers (`client_error`). No I/O: the cron, the admin endpoints and
//! the adapters feed these with what they read.

pub mod alerts;
pub mod client_error;
pub mod config;
pub mod metrics;
pub mod notify;
pub mod stats;

/// How far back the alert rules look (failures, rejected callbacks, errors).
pub const ALERT_WINDOW_MS: i64 = 15 * 60_000;

/// How long hourly aggregates, samples and event counters are kept (the
/// dashboard shows at most 7 days).
pub const KEEP_METRICS_MS: i64 = 8 * 86_400_000;

/// How long resolved alerts are kept.
pub const KEEP_ALERTS_MS: i64 = 30 * 86_400_000;

//! Monitoring settings: where alerts go and the thresholds of the alert
//! rules, plus what one task costs at Kie. Read apart from the service's
//! [`Config`](crate::domain::config::Config): a bad monitoring setting is
//! reported by diagnose (and the default is used), it never takes the service
//! down. A problem names the setting, never its value.

use super::alerts::plain_number;
use crate::domain::config::ConfigProblem;
use crate::domain::model::MODELS;

/// How an alert message is shaped for its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// `{"text": "…"}`: Slack incoming webhooks (and most chat tools).
    Slack,
    /// A Feishu/Lark custom bot: `{"msg_type":"text","content":{"text":"…"}}`,
    /// signed in the body when a secret is set.
    Feishu,
    /// Our documented JSON body with an HMAC signature header.
    Json,
}

impl AlertFormat {
    pub const ALL: [AlertFormat; 3] = [AlertFormat::Slack, AlertFormat::Feishu, AlertFormat::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertFormat::Slack => "slack",
            AlertFormat::Feishu => "feishu",
            AlertFormat::Json => "json",
        }
    }
    pub fn parse(s: &str) -> Option<AlertFormat> {
        let s = s.trim().to_ascii_lowercase();
        AlertFormat::ALL.into_iter().find(|f| f.as_str() == s || (s == "lark" && *f == AlertFormat::Feishu))
    }
}

/// Where alert messages are delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertReceiver {
    /// A secret: it often carries the receiver's token. Never logged.
    pub url: String,
    pub format: AlertFormat,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub environment: String,
    /// `None` when `ALERT_WEBHOOK_URL` is unset (or unusable: see the problems).
    pub receiver: Option<AlertReceiver>,
    pub format: AlertFormat,
    /// Warn (diagnose) and alert below this many Kie credits; 0 turns it off.
    pub kie_balance_warn: f64,
    /// A failure cause alerts when it is at least this share of the tasks
    /// finished in the alert window…
    pub failure_rate_pct: u32,
    /// …and at least this many tasks.
    pub failure_min: u32,
    /// The queue alerts when its oldest task has waited this long.
    pub queue_age_s: i64,
    /// An alert is resolved once its condition has been clear this long
    /// (no message pairs for a value that hovers around a threshold).
    pub resolve_after_s: i64,
    /// Kie credits one task of each model costs at its cheapest setting.
    pub kie_costs: Vec<(&'static str, f64)>,
}

/// What one task costs at Kie, in Kie credits, at the model's cheapest
/// setting (1K, one variant). From Kie's published pricing (kie-api.md §10:
/// 1 Kie credit = $0.005; nano-banana-2 8/12/18 at 1K/2K/4K); Kie changes
/// prices, so each can be overridden with `KIE_COST_<MODEL>`.
pub const KIE_COSTS: &[(&str, f64)] = &[
    ("nano-banana", 4.0),
    ("nano-banana-edit", 4.0),
    ("nano-banana-pro", 18.0),
    ("nano-banana-2", 8.0),
    ("gpt-4o", 6.0),
    ("flux-kontext-pro", 5.0),
    ("flux-kontext-max", 10.0),
];

/// The variable that overrides a model's Kie cost (`KIE_COST_NANO_BANANA`).
pub fn kie_cost_var(model: &str) -> String {
    format!("KIE_COST_{}", model.to_ascii_uppercase().replace('-', "_"))
}

/// A plain decimal (`12`, `0.75`): no sign, no exponent. Parsed by hand, as
/// the standard float parser would add its own code to the bundle.
fn decimal(s: &str) -> Option<f64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || whole.len() > 12 || frac.len() > 6 {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac_value: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    Some(whole as f64 + frac_value as f64 / 10f64.powi(frac.len() as i32))
}

fn url_problem(url: &str, production: bool) -> Option<&'static str> {
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => r,
        (None, Some(_)) if production => return Some("must be an https:// URL in production"),
        (None, Some(r)) => r,
        _ => return Some("must be an http(s) URL"),
    };
    if rest.is_empty() || rest.starts_with('/') || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must be an http(s) URL without spaces");
    }
    None
}

impl MonitorConfig {
    /// Reads every monitoring setting through `get`; each problem falls back
    /// to the default (or to no receiver) and is returned for diagnose.
    pub fn load(get: &dyn Fn(&str) -> Option<String>) -> (MonitorConfig, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut problem = |name: &str, what: &str| problems.push(ConfigProblem { name: name.into(), problem: what.into() });
        let value = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let environment = value("ENVIRONMENT").unwrap_or_else(|| "development".into());
        let production = environment == "production";

        let format = match value("ALERT_WEBHOOK_FORMAT") {
            None => AlertFormat::Slack,
            Some(f) => AlertFormat::parse(&f).unwrap_or_else(|| {
                problem("ALERT_WEBHOOK_FORMAT", "must be slack, feishu or json");
                AlertFormat::Slack
            }),
        };
        let secret = value("ALERT_WEBHOOK_SECRET");
        let receiver = match value("ALERT_WEBHOOK_URL") {
            None => None,
            Some(url) => match url_problem(&url, production) {
                Some(p) => {
                    problem("ALERT_WEBHOOK_URL", p);
                    None
                }
                None if format == AlertFormat::Json && secret.is_none() => {
                    problem("ALERT_WEBHOOK_SECRET", "missing: json alerts are signed with it");
                    None
                }
                None => Some(AlertReceiver { url, format, secret: secret.clone() }),
            },
        };

        let mut number = |name: &str, default: f64, min: f64, max: f64| -> f64 {
            match value(name) {
                None => default,
                Some(v) => match decimal(&v) {
                    Some(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problem(name, &format!("must be a number from {} to {}", plain_number(min), plain_number(max)));
                        default
                    }
                },
            }
        };
        let kie_balance_warn = number("KIE_BALANCE_WARN", 1000.0, 0.0, 1e9);
        let failure_rate_pct = number("ALERT_FAILURE_RATE", 20.0, 1.0, 100.0).round() as u32;
        let failure_min = number("ALERT_FAILURE_MIN", 5.0, 1.0, 100_000.0).round() as u32;
        let queue_age_s = number("ALERT_QUEUE_AGE_SECONDS", 300.0, 30.0, 86_400.0).round() as i64;
        let resolve_after_s = number("ALERT_RESOLVE_AFTER_SECONDS", 120.0, 0.0, 3_600.0).round() as i64;
        let kie_costs = KIE_COSTS.iter().map(|&(model, default)| (model, number(&kie_cost_var(model), default, 0.0, 1e6))).collect();

        let cfg = MonitorConfig {
            environment,
            receiver,
            format,
            kie_balance_warn,
            failure_rate_pct,
            failure_min,
            queue_age_s,
            resolve_after_s,
            kie_costs,
        };
        (cfg, problems)
    }

    /// The model that costs the fewest Kie credits, and its cost: a balance
    /// below it pays for no task at all.
    pub fn cheapest_kie_cost(&self) -> Option<(&'static str, f64)> {
        self.kie_costs
            .iter()
            .filter(|(m, _)| MODELS.iter().any(|spec| spec.name == *m))
            .copied()
            .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> (MonitorConfig, Vec<ConfigProblem>) {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        MonitorConfig::load(&|k| map.get(k).cloned())
    }
    fn names(p: &[ConfigProblem]) -> Vec<&str> {
        p.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn defaults_without_any_setting() {
        let (c, p) = load(&[]);
        assert!(p.is_empty());
        assert_eq!(c.receiver, None);
        assert_eq!(c.format, AlertFormat::Slack);
        assert_eq!(c.kie_balance_warn, 1000.0);
        assert_eq!((c.failure_rate_pct, c.failure_min, c.queue_age_s, c.resolve_after_s), (20, 5, 300, 120));
        assert_eq!(c.cheapest_kie_cost(), Some(("nano-banana", 4.0)));
    }

    #[test]
    fn every_model_has_a_kie_cost_and_an_override() {
        for m in MODELS {
            assert!(KIE_COSTS.iter().any(|(n, _)| *n == m.name), "{} has no Kie cost", m.name);
        }
        assert_eq!(kie_cost_var("nano-banana-2"), "KIE_COST_NANO_BANANA_2");
        let (c, p) = load(&[("KIE_COST_NANO_BANANA", "9"), ("KIE_COST_NANO_BANANA_EDIT", "9.5"), ("KIE_COST_FLUX_KONTEXT_PRO", "2.5")]);
        assert!(p.is_empty());
        assert_eq!(c.cheapest_kie_cost(), Some(("flux-kontext-pro", 2.5)));
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal("12"), Some(12.0));
        assert_eq!(decimal("0.75"), Some(0.75));
        assert_eq!(decimal(".5"), Some(0.5));
        assert_eq!(decimal("3."), Some(3.0));
        for bad in ["", ".", "-1", "1e3", "1.2.3", "abc", "1,5"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn receivers_by_format() {
        let (c, p) = load(&[("ALERT_WEBHOOK_URL", "https://hooks.example/T/B/x"), ("ALERT_WEBHOOK_FORMAT", "Feishu")]);
        assert!(p.is_empty());
        assert_eq!(c.receiver.unwrap().format, AlertFormat::Feishu);
        let (c, _) = load(&[("ALERT_WEBHOOK_URL", "https://x.example/a"), ("ALERT_WEBHOOK_FORMAT", "lark")]);
        assert_eq!(c.format, AlertFormat::Feishu);
        // json needs its signing secret.
        let (c, p) = load(&[("ALERT_WEBHOOK_URL", "https://x.example/a"), ("ALERT_WEBHOOK_FORMAT", "json")]);
        assert_eq!(c.receiver, None);
        assert_eq!(names(&p), vec!["ALERT_WEBHOOK_SECRET"]);
        let (c, p) = load(&[
            ("ALERT_WEBHOOK_URL", "https://x.example/a"),
            ("ALERT_WEBHOOK_FORMAT", "json"),
            ("ALERT_WEBHOOK_SECRET", "s3cret-value"),
        ]);
        assert!(p.is_empty());
        assert_eq!(c.receiver.unwrap().secret.as_deref(), Some("s3cret-value"));
    }

    #[test]
    fn problems_name_the_setting_never_the_value_and_fall_back() {
        let (c, p) = load(&[
            ("ENVIRONMENT", "production"),
            ("ALERT_WEBHOOK_URL", "http://hooks.example/secret-token"),
            ("ALERT_WEBHOOK_FORMAT", "teams"),
            ("KIE_BALANCE_WARN", "-1"),
            ("ALERT_FAILURE_RATE", "0"),
            ("KIE_COST_GPT_4O", "cheap"),
        ]);
        assert_eq!(
            names(&p),
            vec!["ALERT_WEBHOOK_FORMAT", "ALERT_WEBHOOK_URL", "KIE_BALANCE_WARN", "ALERT_FAILURE_RATE", "KIE_COST_GPT_4O"]
        );
        assert!(!format!("{p:?}").contains("secret-token"));
        assert_eq!(c.receiver, None);
        assert_eq!((c.kie_balance_warn, c.failure_rate_pct), (1000.0, 20));
        let (_, p) = load(&[("ALERT_WEBHOOK_URL", "hooks.example/x")]);
        assert_eq!(names(&p), vec!["ALERT_WEBHOOK_URL"]);
        let (c, p) = load(&[("ALERT_WEBHOOK_URL", "http://127.0.0.1:9999/hook")]);
        assert!(p.is_empty(), "plain http outside production");
        assert!(c.receiver.is_some());
    }
}

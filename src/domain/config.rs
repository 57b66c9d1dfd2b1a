//! Typed configuration, built once per request from wrangler vars and secrets.
//! A problem names the setting, never its value.

use super::billing::{load_billing, BillingConfig};
use super::model::MODELS;
use super::oidc::GOOGLE_ISSUER;
use super::turnstile::DEFAULT_VERIFY_URL;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    pub name: String,
    pub problem: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    pub kie_api_key: String,
    pub admin_token: String,
    pub file_url_secret: String,
    pub kie_webhook_hmac_key: Option<String>,
    /// The Worker's public origin, without a trailing slash; callbacks only when set.
    pub public_base_url: Option<String>,
    pub kie_api_base: String,
    prices: Vec<(&'static str, u32)>,
    pub max_upload_bytes: u64,
    pub max_body_bytes: u64,
    pub rate_limit_per_minute: u32,
    pub max_active_tasks: u32,
    pub task_deadline_s: i64,
    pub poll_interval_s: i64,
    /// The cron refreshes active tasks not heard of for this long.
    pub refresh_quiet_s: i64,
    pub kie_creates_per_window: u32,
    pub kie_window_s: i64,
    pub kie_timeout_ms: u64,
    pub input_url_ttl_s: i64,
    pub result_url_ttl_s: i64,
    /// Subrequests (fetches and D1/KV/R2 calls) one invocation may make:
    /// 50 on Cloudflare's Free plan, 10,000 by default on Paid.
    pub subrequest_budget: u32,
    /// Sign-in with OpenID Connect; `None` when `OIDC_CLIENT_ID` is not set.
    pub oidc: Option<OidcSettings>,
    /// Credits granted once to an account created by signing in.
    pub starter_credits: i64,
    /// The human check on a first sign-in; `None` when `TURNSTILE_SECRET_KEY` is not set.
    pub turnstile: Option<TurnstileSettings>,
    /// New accounts per client IP per window.
    pub new_accounts_per_ip: u32,
    pub new_accounts_window_s: i64,
    /// A session's expiry is pushed out at most this often.
    pub session_refresh_s: i64,
    /// Buying credits (Stripe); `None` when it is not configured.
    pub billing: Option<BillingConfig>,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone)]
pub struct TurnstileSettings {
    pub secret_key: String,
    pub site_key: String,
    pub verify_url: String,
}

/// Secrets that must be present for the service to work.
pub const REQUIRED_SECRETS: &[&str] = &["KIEAI_APIKEY", "ADMIN_TOKEN", "FILE_URL_SECRET"];

fn origin_problem(value: &str, require_https: bool) -> Option<String> {
    let rest = if let Some(r) = value.strip_prefix("https://") {
        r
    } else if let Some(r) = value.strip_prefix("http://") {
        if require_https {
            return Some("must start with https:// in production".into());
        }
        r
    } else {
        return Some("must be an http(s) URL".into());
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Some("must be an origin like https://example.com (no path)".into());
    }
    None
}

/// An http(s) URL that may have a path (an issuer, an endpoint): https in production.
fn url_problem(value: &str, require_https: bool) -> Option<String> {
    let rest = match (value.strip_prefix("https://"), value.strip_prefix("http://")) {
        (Some(r), _) => r,
        (None, Some(_)) if require_https => return Some("must start with https:// in production".into()),
        (None, Some(r)) => r,
        _ => return Some("must be an http(s) URL".into()),
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || value.contains(['?', '#', ' ']) {
        return Some("must be a URL like https://example.com/path (no query)".into());
    }
    None
}

impl Config {
    /// Reads every setting through `get` and reports all problems at once.
    pub fn load(get: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |name: &str, what: &str| problems.push(ConfigProblem { name: name.into(), problem: what.into() });
        let value = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let environment = value("ENVIRONMENT").unwrap_or_else(|| "development".into());
        let production = environment == "production";

        let mut secret = |name: &str, min_len: usize| match value(name) {
            None => {
                problem(name, "missing");
                String::new()
            }
            Some(v) if v.len() < min_len || v.contains(char::is_whitespace) => {
                problem(name, &format!("must be at least {min_len} characters without spaces"));
                String::new()
            }
            Some(v) => v,
        };
        let kie_api_key = secret("KIEAI_APIKEY", 8);
        let admin_token = secret("ADMIN_TOKEN", 16);
        let file_url_secret = secret("FILE_URL_SECRET", 16);
        let kie_webhook_hmac_key = value("KIE_WEBHOOK_HMAC_KEY");

        let public_base_url = value("PUBLIC_BASE_URL").map(|v| v.trim_end_matches('/').to_string());
        if let Some(url) = &public_base_url {
            if let Some(p) = origin_problem(url, production) {
                problem("PUBLIC_BASE_URL", &p);
            }
        }
        let kie_api_base =
            value("KIE_API_BASE").map(|v| v.trim_end_matches('/').to_string()).unwrap_or_else(|| "https://api.kie.ai".into());
        if let Some(p) = origin_problem(&kie_api_base, production) {
            problem("KIE_API_BASE", &p);
        }

        let mut number = |name: &str, default: u64, min: u64, max: u64| -> u64 {
            match value(name) {
                None => default,
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problem(name, &format!("must be a whole number from {min} to {max}"));
                        default
                    }
                },
            }
        };
        let mut prices = Vec::new();
        for m in MODELS {
            let price = number(&m.price_var(), u64::from(m.default_price), 0, 100_000);
            prices.push((m.name, u32::try_from(price).unwrap_or(m.default_price)));
        }
        let max_upload_bytes = number("MAX_UPLOAD_BYTES", 10 * 1024 * 1024, 1024, 30 * 1024 * 1024);
        let max_body_bytes = number("MAX_BODY_BYTES", 50 * 1024 * 1024, 64 * 1024, 95 * 1024 * 1024);
        let rate_limit_per_minute = number("RATE_LIMIT_PER_MINUTE", 30, 1, 100_000) as u32;
        let max_active_tasks = number("MAX_ACTIVE_TASKS", 10, 1, 10_000) as u32;
        let task_deadline_s = number("TASK_DEADLINE_SECONDS", 900, 10, 86_400) as i64;
        let poll_interval_s = number("POLL_INTERVAL_SECONDS", 3, 1, 600) as i64;
        let refresh_quiet_s = number("REFRESH_QUIET_SECONDS", 30, 1, 3600) as i64;
        let kie_creates_per_window = number("KIE_CREATES_PER_WINDOW", 20, 1, 10_000) as u32;
        let kie_window_s = number("KIE_WINDOW_SECONDS", 10, 1, 3600) as i64;
        let kie_timeout_ms = number("KIE_TIMEOUT_MS", 20_000, 500, 60_000);
        let input_url_ttl_s = number("INPUT_URL_TTL_SECONDS", 3 * 86_400, 600, 30 * 86_400) as i64;
        let result_url_ttl_s = number("RESULT_URL_TTL_SECONDS", 7 * 86_400, 600, 365 * 86_400) as i64;
        let subrequest_budget = number("SUBREQUEST_BUDGET", 50, 30, 10_000_000) as u32;

        let starter_credits = number("STARTER_CREDITS", 10, 0, 1_000_000) as i64;
        let new_accounts_per_ip = number("NEW_ACCOUNTS_PER_IP", 5, 1, 1_000_000) as u32;
        let new_accounts_window_s = number("NEW_ACCOUNTS_WINDOW_SECONDS", 86_400, 60, 30 * 86_400) as i64;
        let session_refresh_s = number("SESSION_REFRESH_SECONDS", 86_400, 1, 7 * 86_400) as i64;
        let (billing, billing_problems) = load_billing(&value, &|url| origin_problem(url, production));
        for (name, what) in billing_problems {
            problem(name, &what);
        }

        let oidc = match (value("OIDC_CLIENT_ID"), value("OIDC_CLIENT_SECRET")) {
            (None, None) => None,
            (Some(_), None) => {
                problem("OIDC_CLIENT_SECRET", "missing (OIDC_CLIENT_ID is set)");
                None
            }
            (None, Some(_)) => {
                problem("OIDC_CLIENT_ID", "missing (OIDC_CLIENT_SECRET is set)");
                None
            }
            (Some(client_id), Some(client_secret)) => {
                let issuer = value("OIDC_ISSUER").unwrap_or_else(|| GOOGLE_ISSUER.into());
                if let Some(p) = url_problem(&issuer, production) {
                    problem("OIDC_ISSUER", &p);
                }
                Some(OidcSettings { issuer, client_id, client_secret })
            }
        };
        let turnstile = match value("TURNSTILE_SECRET_KEY") {
            None => None,
            Some(secret_key) => {
                let site_key = value("TURNSTILE_SITE_KEY").unwrap_or_default();
                if site_key.is_empty() {
                    problem("TURNSTILE_SITE_KEY", "missing (TURNSTILE_SECRET_KEY is set; the page needs the site key)");
                }
                let verify_url = value("TURNSTILE_VERIFY_URL").unwrap_or_else(|| DEFAULT_VERIFY_URL.into());
                if let Some(p) = url_problem(&verify_url, production) {
                    problem("TURNSTILE_VERIFY_URL", &p);
                }
                Some(TurnstileSettings { secret_key, site_key, verify_url })
            }
        };

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            environment,
            kie_api_key,
            admin_token,
            file_url_secret,
            kie_webhook_hmac_key,
            public_base_url,
            kie_api_base,
            prices,
            max_upload_bytes,
            max_body_bytes,
            rate_limit_per_minute,
            max_active_tasks,
            task_deadline_s,
            poll_interval_s,
            refresh_quiet_s,
            kie_creates_per_window,
            kie_window_s,
            kie_timeout_ms,
            input_url_ttl_s,
            result_url_ttl_s,
            subrequest_budget,
            oidc,
            starter_credits,
            turnstile,
            new_accounts_per_ip,
            new_accounts_window_s,
            session_refresh_s,
            billing,
        })
    }

    pub fn price(&self, model: &str) -> u32 {
        self.prices.iter().find(|(m, _)| *m == model).map(|(_, p)| *p).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, Vec<ConfigProblem>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(&|k| map.get(k).cloned())
    }

    const OK: &[(&str, &str)] =
        &[("KIEAI_APIKEY", "kie-key-123"), ("ADMIN_TOKEN", "admin-token-0123456789"), ("FILE_URL_SECRET", "file-secret-0123456789")];

    #[test]
    fn minimal_config_loads_with_documented_defaults() {
        let c = load(OK).unwrap();
        assert_eq!(c.kie_api_base, "https://api.kie.ai");
        assert_eq!(c.public_base_url, None);
        assert_eq!(c.price("nano-banana"), 2);
        assert_eq!(c.task_deadline_s, 900);
        assert_eq!(c.kie_creates_per_window, 20);
        assert_eq!(c.subrequest_budget, 50, "the Free plan's subrequests per invocation");
    }

    #[test]
    fn each_missing_secret_is_named_and_values_never_appear() {
        for missing in REQUIRED_SECRETS {
            let pairs: Vec<_> = OK.iter().filter(|(k, _)| k != missing).cloned().collect();
            let problems = load(&pairs).unwrap_err();
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].name, *missing);
            assert_eq!(problems[0].problem, "missing");
        }
        let mut pairs = OK.to_vec();
        pairs[1] = ("ADMIN_TOKEN", "short");
        let problems = load(&pairs).unwrap_err();
        assert!(!format!("{problems:?}").contains("short"));
    }

    #[test]
    fn urls_and_numbers_are_checked() {
        let mut pairs = OK.to_vec();
        pairs.push(("PUBLIC_BASE_URL", "worker.example.com"));
        pairs.push(("PRICE_GPT_4O", "-3"));
        let names: Vec<_> = load(&pairs).unwrap_err().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["PUBLIC_BASE_URL", "PRICE_GPT_4O"]);

        let mut pairs = OK.to_vec();
        pairs.push(("ENVIRONMENT", "production"));
        pairs.push(("PUBLIC_BASE_URL", "http://worker.example.com"));
        assert_eq!(load(&pairs).unwrap_err()[0].name, "PUBLIC_BASE_URL");

        let mut pairs = OK.to_vec();
        pairs.push(("PUBLIC_BASE_URL", "https://worker.example.com/"));
        pairs.push(("PRICE_NANO_BANANA", "7"));
        let c = load(&pairs).unwrap();
        assert_eq!(c.public_base_url.as_deref(), Some("https://worker.example.com"));
        assert_eq!(c.price("nano-banana"), 7);
    }

    #[test]
    fn sign_in_settings() {
        let c = load(OK).unwrap();
        assert!(c.oidc.is_none() && c.turnstile.is_none());
        assert_eq!(c.starter_credits, 10);
        assert_eq!(c.new_accounts_per_ip, 5);

        let mut pairs = OK.to_vec();
        pairs.extend([("OIDC_CLIENT_ID", "client-1"), ("OIDC_CLIENT_SECRET", "oidc-secret-value"), ("STARTER_CREDITS", "25")]);
        let c = load(&pairs).unwrap();
        let o = c.oidc.unwrap();
        assert_eq!((o.issuer.as_str(), o.client_id.as_str()), ("https://accounts.google.com", "client-1"));
        assert_eq!(c.starter_credits, 25);

        // Half a client is a named problem, never a value.
        let mut pairs = OK.to_vec();
        pairs.push(("OIDC_CLIENT_ID", "client-1"));
        let problems = load(&pairs).unwrap_err();
        assert_eq!(problems[0].name, "OIDC_CLIENT_SECRET");
        assert!(!format!("{problems:?}").contains("client-1"));

        // A local provider over http: allowed in development, not in production.
        let mut pairs = OK.to_vec();
        pairs.extend([("OIDC_CLIENT_ID", "c"), ("OIDC_CLIENT_SECRET", "s"), ("OIDC_ISSUER", "http://127.0.0.1:9000")]);
        assert!(load(&pairs).is_ok());
        pairs.push(("ENVIRONMENT", "production"));
        let names: Vec<_> = load(&pairs).unwrap_err().into_iter().map(|p| p.name).collect();
        assert!(names.contains(&"OIDC_ISSUER".to_string()));

        let mut pairs = OK.to_vec();
        pairs.push(("TURNSTILE_SECRET_KEY", "0x4AAAA-secret"));
        assert_eq!(load(&pairs).unwrap_err()[0].name, "TURNSTILE_SITE_KEY");
        pairs.push(("TURNSTILE_SITE_KEY", "0x4AAAA-site"));
        let t = load(&pairs).unwrap().turnstile.unwrap();
        assert_eq!(t.verify_url, "https://challenges.cloudflare.com/turnstile/v0/siteverify");
    }
}

//! The alert rules and the life of an alert. Each scheduled run observes the
//! service ([`Observations`]), [`evaluate`] says which conditions hold, and
//! [`step`] decides, per condition, whether an alert opens, stays, starts
//! clearing or is resolved. A message is sent when an alert opens and when it
//! is resolved, nothing in between.

use super::config::MonitorConfig;
use super::ALERT_WINDOW_MS;
use crate::domain::kie::{parse_envelope, Transport};
use crate::domain::signature::WebhookAuthError;

/// A task still unfinished this long after its deadline means the scheduled
/// job is not keeping up (it fails overdue tasks every minute).
pub const OVERDUE_GRACE_MS: i64 = 2 * 60_000;

/// What Kie's free credit call said.
#[derive(Debug, Clone, PartialEq)]
pub enum KieCheck {
    /// Not asked (the configuration is incomplete).
    NotChecked,
    Balance(f64),
    /// Kie refused the key (401 or 403); the text says how.
    KeyRejected(String),
    /// Kie could not be asked (down, timeout, an answer we cannot read).
    Unavailable(String),
}

impl KieCheck {
    /// Reads the answer to Kie's free credit call (`GET /api/v1/chat/credit`,
    /// `data` is the balance). Only a 401 (business code or HTTP status) is a
    /// rejected key; anything else Kie could not answer is `Unavailable`.
    pub fn from_credit_call(t: &Transport) -> KieCheck {
        match t {
            Transport::Response { status, body } => match parse_envelope(body) {
                Some(env) if env.code == 200 => match env.data.as_f64() {
                    Some(balance) => KieCheck::Balance(balance),
                    None => KieCheck::Unavailable("the credit answer had no number".into()),
                },
                Some(env) if env.code == 401 => KieCheck::KeyRejected(format!("kie code 401: {}", env.msg)),
                Some(env) => KieCheck::Unavailable(format!("kie code {}: {}", env.code, env.msg)),
                None if *status == 401 => KieCheck::KeyRejected("HTTP 401".into()),
                None => KieCheck::Unavailable(format!("kie HTTP {status} with a non-JSON body")),
            },
            other => KieCheck::Unavailable(format!("kie {other}")),
        }
    }
}

/// Whether a condition could not be judged this run (Kie did not answer the
/// credit call): its alert is left as it is rather than resolved.
pub fn undetermined(key: &str, obs: &Observations) -> bool {
    match (key, &obs.kie) {
        ("kie_key_rejected", Some(KieCheck::Balance(_) | KieCheck::KeyRejected(_))) => false,
        ("kie_balance_empty" | "kie_balance_low", Some(KieCheck::Balance(_))) => false,
        ("kie_key_rejected" | "kie_balance_empty" | "kie_balance_low", _) => true,
        ("config_invalid", _) => false,
        (_, _) => obs.queue.is_none(),
    }
}

/// Unfinished tasks right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queued: i64,
    pub at_kie: i64,
    /// `created_at` of the oldest queued task.
    pub oldest_queued_at: Option<i64>,
    /// Unfinished tasks more than [`OVERDUE_GRACE_MS`] past their deadline.
    pub overdue: i64,
}

/// What one scheduled run saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    pub now: i64,
    /// Names of missing or invalid settings of the service itself.
    pub config_problems: Vec<String>,
    pub kie: Option<KieCheck>,
    /// Tasks finished in the alert window, by outcome (`succeeded` or a failure code).
    pub outcomes: Vec<(String, i64)>,
    /// Event counters in the alert window, by kind (see [`event`]).
    pub events: Vec<(String, i64)>,
    /// `None` when D1 could not be read.
    pub queue: Option<QueueStats>,
    /// Why the scheduled R2 check failed, if it did.
    pub r2_problem: Option<String>,
}

/// The names of the counted events.
pub mod event {
    pub const D1_ERROR: &str = "error.d1";
    pub const R2_ERROR: &str = "error.r2";
    pub const COPY_RETRY: &str = "result.copy_retry";
    pub const CLIENT_ERROR: &str = "client.error";
    pub const CALLBACK_REJECTED: &str = "callback.rejected.";
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Stable key: one open alert per key.
    pub key: String,
    /// What is wrong and what to do, in plain words.
    pub message: String,
}

/// Why a callback was answered 401, from the error's internal cause.
pub fn rejection_cause(internal: Option<&str>) -> &'static str {
    let Some(why) = internal else { return "other" };
    let auth = |e: WebhookAuthError| why == e.reason();
    if auth(WebhookAuthError::BadSignature) {
        "signature"
    } else if auth(WebhookAuthError::MissingHeaders) {
        "unsigned"
    } else if auth(WebhookAuthError::StaleTimestamp) || auth(WebhookAuthError::BadTimestamp) {
        "timestamp"
    } else if auth(WebhookAuthError::MissingTaskId) {
        "no_task_id"
    } else if why.contains("task token") {
        "token"
    } else if why.contains("another task") {
        "task_mismatch"
    } else {
        "other"
    }
}

/// The likely cause of callbacks rejected for `cause`, and what to do.
pub fn rejection_hint(cause: &str) -> &'static str {
    match cause {
        "signature" => {
            "the signature does not match: KIE_WEBHOOK_HMAC_KEY is likely not the key Kie signs with; copy the webhook HMAC key \
             from kie.ai settings again and set it with `wrangler secret put KIE_WEBHOOK_HMAC_KEY --env <environment>`"
        }
        "unsigned" => {
            "the callbacks carry no signature: Kie is not signing them; enable webhook HMAC in kie.ai settings, or unset \
             KIE_WEBHOOK_HMAC_KEY"
        }
        "timestamp" => "the signature timestamps are more than 300 s away: delayed or replayed callbacks, or a clock problem",
        "no_task_id" => "the callbacks carry no taskId to check the signature against: an unexpected callback shape",
        "token" | "task_mismatch" => {
            "the per-task token in the callback URL is wrong: another deployment or database answers at this PUBLIC_BASE_URL, \
             or someone is sending forged callbacks"
        }
        _ => "an unexpected rejection; see the callback.* and http.rejected log lines",
    }
}

/// The counter an internal error adds to, if it is a storage error.
pub fn storage_error_event(internal: Option<&str>) -> Option<&'static str> {
    let why = internal?;
    if why.starts_with("d1 ") {
        Some(event::D1_ERROR)
    } else if why.starts_with("r2 ") {
        Some(event::R2_ERROR)
    } else {
        None
    }
}

/// A number without a needless fraction: `4`, `2.5`, `0.75`.
pub fn plain_number(n: f64) -> String {
    // Integer arithmetic: float formatting would add its own code to the bundle.
    let cents = (n * 100.0).round() as i64;
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, frac) = ((cents / 100).abs(), (cents % 100).abs());
    match frac {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

fn cause_hint(cause: &str) -> &'static str {
    match cause {
        "content_policy" => "the model refused the prompts or images under its content policy",
        "input_unreachable" => "Kie could not download input images: check the \"public input url\" link of GET /api/admin/diagnose",
        "input_invalid" => "Kie could not use input images (too large or an unsupported format)",
        "provider_failed" => "Kie reports generation failures: check Kie's status",
        "provider_timeout" => "Kie did not finish tasks before TASK_DEADLINE_SECONDS",
        "submission_failed" => "Kie refused or lost create calls: check the Kie key, balance and status",
        "result_invalid" => "Kie returned results that are not images",
        _ => "see the task.state log lines",
    }
}

fn count(list: &[(String, i64)], key: &str) -> i64 {
    list.iter().filter(|(k, _)| k == key).map(|(_, n)| n).sum()
}

/// Every condition that holds, in a stable order.
pub fn evaluate(obs: &Observations, cfg: &MonitorConfig) -> Vec<Condition> {
    let mut out = Vec::new();
    let mut add = |key: String, message: String| out.push(Condition { key, message });
    let window_min = ALERT_WINDOW_MS / 60_000;

    if !obs.config_problems.is_empty() {
        add(
            "config_invalid".into(),
            format!(
                "{}: missing or invalid: {}. Users get 503 config_error until they are set.",
                title("config_invalid"),
                obs.config_problems.join(", ")
            ),
        );
    }

    match &obs.kie {
        Some(KieCheck::KeyRejected(why)) => add(
            "kie_key_rejected".into(),
            format!("{}: {why}. Every new task fails until KIEAI_APIKEY holds a valid key.", title("kie_key_rejected")),
        ),
        Some(KieCheck::Balance(balance)) => {
            if let Some((model, cost)) = cfg.cheapest_kie_cost() {
                if *balance < cost {
                    add(
                        "kie_balance_empty".into(),
                        format!(
                            "{}: {} Kie credits left; the cheapest model ({model}) costs about {} per task, so Kie refuses every \
                             new task. Top up at kie.ai.",
                            title("kie_balance_empty"),
                            plain_number(*balance),
                            plain_number(cost)
                        ),
                    );
                }
            }
            if cfg.kie_balance_warn > 0.0 && *balance < cfg.kie_balance_warn {
                add(
                    "kie_balance_low".into(),
                    format!(
                        "{}: {} Kie credits left, below KIE_BALANCE_WARN ({}). Top up at kie.ai before it runs out.",
                        title("kie_balance_low"),
                        plain_number(*balance),
                        plain_number(cfg.kie_balance_warn)
                    ),
                );
            }
        }
        Some(KieCheck::NotChecked) | Some(KieCheck::Unavailable(_)) | None => {}
    }

    let finished: i64 = obs.outcomes.iter().map(|(_, n)| n).sum();
    for (cause, n) in obs.outcomes.iter().filter(|(o, _)| o != "succeeded") {
        let rate_ok = (*n as f64) * 100.0 >= f64::from(cfg.failure_rate_pct) * finished as f64;
        if *n >= i64::from(cfg.failure_min) && rate_ok {
            let key = format!("failures:{cause}");
            add(
                key.clone(),
                format!(
                    "{}: {n} of {finished} tasks finished in the last {window_min} min failed with {cause} ({}%; the alert is at \
                     {}% and {} tasks, ALERT_FAILURE_RATE / ALERT_FAILURE_MIN). Likely cause: {}.",
                    title(&key),
                    n * 100 / finished.max(1),
                    cfg.failure_rate_pct,
                    cfg.failure_min,
                    cause_hint(cause)
                ),
            );
        }
    }

    for (kind, n) in &obs.events {
        let Some(cause) = kind.strip_prefix(event::CALLBACK_REJECTED) else { continue };
        if *n > 0 {
            let key = format!("callbacks_rejected:{cause}");
            add(
                key.clone(),
                format!(
                    "{}: {n} Kie callbacks were answered 401 in the last {window_min} min; {}. Tasks still finish by polling and \
                     the scheduled job, minutes late.",
                    title(&key),
                    rejection_hint(cause)
                ),
            );
        }
    }

    if let Some(q) = obs.queue {
        if q.overdue > 0 {
            add(
                "tasks_overdue".into(),
                format!(
                    "{}: {} unfinished tasks are more than {} min past their deadline; the scheduled job is not keeping up or \
                     cannot reach Kie. See GET /api/admin/tasks?stuck=true and the cron.run log lines.",
                    title("tasks_overdue"),
                    q.overdue,
                    OVERDUE_GRACE_MS / 60_000
                ),
            );
        }
        if let Some(oldest) = q.oldest_queued_at {
            let waited_s = (obs.now - oldest) / 1000;
            if waited_s >= cfg.queue_age_s {
                add(
                    "queue_stalled".into(),
                    format!(
                        "{}: the oldest of {} queued tasks has waited {} min (the alert is at {} s, ALERT_QUEUE_AGE_SECONDS); Kie \
                         may be refusing creates (429/455) or the scheduled job is not running.",
                        title("queue_stalled"),
                        q.queued,
                        waited_s / 60,
                        cfg.queue_age_s
                    ),
                );
            }
        }
    }

    let retries = count(&obs.events, event::COPY_RETRY);
    if retries >= i64::from(cfg.failure_min) {
        add(
            "results_not_copied".into(),
            format!(
                "{}: {retries} times in the last {window_min} min a finished result could not be fetched from Kie or stored in \
                 R2; those tasks stay unfinished until it works or their deadline fails them.",
                title("results_not_copied")
            ),
        );
    }

    let d1 = count(&obs.events, event::D1_ERROR);
    if d1 > 0 {
        add("d1_errors".into(), format!("{}: {d1} D1 errors in the last {window_min} min (requests answered 500).", title("d1_errors")));
    }
    let r2 = count(&obs.events, event::R2_ERROR);
    if r2 > 0 || obs.r2_problem.is_some() {
        let probe = obs.r2_problem.as_ref().map(|p| format!(" The scheduled R2 check failed: {p}.")).unwrap_or_default();
        add("r2_errors".into(), format!("{}: {r2} R2 errors in the last {window_min} min.{probe}", title("r2_errors")));
    }
    out
}

/// A condition's name in plain words (also for keys no longer evaluated).
pub fn title(key: &str) -> String {
    let (kind, arg) = key.split_once(':').unwrap_or((key, ""));
    match kind {
        "config_invalid" => "Settings missing or invalid".into(),
        "kie_key_rejected" => "Kie rejects the API key".into(),
        "kie_balance_empty" => "Kie balance cannot pay for any task".into(),
        "kie_balance_low" => "Kie balance below the warning threshold".into(),
        "failures" => format!("Tasks failing with {arg}"),
        "callbacks_rejected" => format!("Kie callbacks rejected ({arg})"),
        "tasks_overdue" => "Tasks past their deadline".into(),
        "queue_stalled" => "Queue not draining".into(),
        "results_not_copied" => "Results cannot be copied".into(),
        "d1_errors" => "D1 errors".into(),
        "r2_errors" => "R2 errors".into(),
        other => other.replace('_', " "),
    }
}

/// "40 s", "12 min", "3 h 5 min".
pub fn duration_words(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The message sent when an alert ends: names the condition and says "resolved".
pub fn resolved_message(key: &str, started_at: i64, now: i64, obs: &Observations) -> String {
    let now_detail = match (&obs.kie, key) {
        (Some(KieCheck::Balance(b)), "kie_balance_low" | "kie_balance_empty") => format!("; balance now {} Kie credits", plain_number(*b)),
        _ => String::new(),
    };
    format!("{} — resolved after {}{now_detail}.", title(key), duration_words(now - started_at))
}

/// An alert that is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAlert {
    pub started_at: i64,
    /// Since when its condition has not held, if it is clearing.
    pub clear_since: Option<i64>,
}

/// What to do with one condition in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing open, nothing holds.
    Nothing,
    /// A new alert: send its message.
    Open,
    /// Open and still holding (or clearing, not long enough): say nothing.
    Keep,
    /// It stopped holding: remember since when.
    StartClearing,
    /// It holds again while clearing: forget the clearing.
    Reactivate,
    /// Clear for long enough: resolve and send the "resolved" message.
    Resolve,
}

pub fn step(open: Option<OpenAlert>, holds: bool, now: i64, resolve_after_s: i64) -> Step {
    match (open, holds) {
        (None, false) => Step::Nothing,
        (None, true) => Step::Open,
        (Some(a), true) if a.clear_since.is_some() => Step::Reactivate,
        (Some(_), true) => Step::Keep,
        (Some(a), false) => {
            let since = a.clear_since.unwrap_or(now);
            if now - since >= resolve_after_s * 1000 {
                Step::Resolve
            } else if a.clear_since.is_none() {
                Step::StartClearing
            } else {
                Step::Keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::monitor::config::MonitorConfig;

    fn cfg() -> MonitorConfig {
        MonitorConfig::load(&|_| None).0
    }
    fn keys(obs: &Observations) -> Vec<String> {
        evaluate(obs, &cfg()).into_iter().map(|c| c.key).collect()
    }
    fn obs() -> Observations {
        Observations { now: 10_000_000, kie: Some(KieCheck::Balance(5_000.0)), queue: Some(QueueStats::default()), ..Default::default() }
    }

    #[test]
    fn a_healthy_service_has_no_condition() {
        let mut o = obs();
        o.outcomes = vec![("succeeded".into(), 40), ("content_policy".into(), 2)];
        assert!(keys(&o).is_empty());
    }

    #[test]
    fn kie_balance_empty_low_and_key() {
        let mut o = obs();
        o.kie = Some(KieCheck::Balance(999.0));
        assert_eq!(keys(&o), vec!["kie_balance_low"]);
        o.kie = Some(KieCheck::Balance(3.5));
        let c = evaluate(&o, &cfg());
        assert_eq!(c.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), vec!["kie_balance_empty", "kie_balance_low"]);
        assert!(c[0].message.contains("3.5 Kie credits left; the cheapest model (nano-banana) costs about 4 per task"), "{}", c[0].message);
        o.kie = Some(KieCheck::KeyRejected("kie code 401: Unauthorized".into()));
        let c = evaluate(&o, &cfg());
        assert_eq!(c.len(), 1);
        assert!(c[0].message.starts_with("Kie rejects the API key: kie code 401"));
        o.kie = Some(KieCheck::Unavailable("timed out".into()));
        assert!(keys(&o).is_empty(), "Kie being slow is not a key or balance problem");
        // A warning threshold of 0 turns the low-balance alert off.
        let mut quiet = cfg();
        quiet.kie_balance_warn = 0.0;
        o.kie = Some(KieCheck::Balance(10.0));
        assert!(evaluate(&o, &quiet).is_empty());
    }

    #[test]
    fn failures_need_both_the_rate_and_the_count() {
        let mut o = obs();
        // 5 of 100: the count is there, the rate (5%) is not.
        o.outcomes = vec![("succeeded".into(), 95), ("provider_failed".into(), 5)];
        assert!(keys(&o).is_empty());
        // 4 of 4: the rate is there, the count (4 < 5) is not.
        o.outcomes = vec![("provider_failed".into(), 4)];
        assert!(keys(&o).is_empty());
        // 5 of 25 = 20%: both, per cause.
        o.outcomes = vec![("succeeded".into(), 14), ("provider_failed".into(), 5), ("content_policy".into(), 6)];
        let c = evaluate(&o, &cfg());
        assert_eq!(c.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), vec!["failures:provider_failed", "failures:content_policy"]);
        assert!(c[0].message.contains("5 of 25 tasks finished in the last 15 min failed with provider_failed (20%"), "{}", c[0].message);
    }

    #[test]
    fn callbacks_queue_copies_and_storage() {
        let mut o = obs();
        o.events = vec![
            ("callback.rejected.signature".into(), 3),
            ("error.d1".into(), 1),
            ("result.copy_retry".into(), 5),
            ("client.error".into(), 40),
        ];
        o.queue = Some(QueueStats { queued: 7, at_kie: 2, oldest_queued_at: Some(o.now - 301_000), overdue: 2 });
        o.r2_problem = Some("r2 head: bucket gone".into());
        let c = evaluate(&o, &cfg());
        let k: Vec<_> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            k,
            vec!["callbacks_rejected:signature", "tasks_overdue", "queue_stalled", "results_not_copied", "d1_errors", "r2_errors"]
        );
        assert!(c[0].message.contains("KIE_WEBHOOK_HMAC_KEY is likely not the key Kie signs with"));
        assert!(c[2].message.contains("oldest of 7 queued tasks has waited 5 min"));
        assert!(c[5].message.contains("The scheduled R2 check failed: r2 head: bucket gone."));
        // Just under the queue threshold.
        o.queue = Some(QueueStats { queued: 7, at_kie: 2, oldest_queued_at: Some(o.now - 299_000), overdue: 0 });
        o.events.clear();
        o.r2_problem = None;
        assert!(keys(&o).is_empty());
        o.config_problems = vec!["FILE_URL_SECRET".into()];
        assert_eq!(
            evaluate(&o, &cfg())[0].message,
            "Settings missing or invalid: missing or invalid: FILE_URL_SECRET. Users get 503 config_error until they are set."
        );
    }

    #[test]
    fn the_credit_call_is_read_and_only_a_401_is_a_rejected_key() {
        let answer = |status: u16, body: &str| KieCheck::from_credit_call(&Transport::Response { status, body: body.as_bytes().to_vec() });
        assert_eq!(answer(200, r#"{"code":200,"msg":"success","data":100}"#), KieCheck::Balance(100.0));
        assert_eq!(answer(200, r#"{"code":200,"msg":"success","data":0.75}"#), KieCheck::Balance(0.75));
        assert_eq!(answer(200, r#"{"code":401,"msg":"Unauthorized"}"#), KieCheck::KeyRejected("kie code 401: Unauthorized".into()));
        assert_eq!(answer(401, "nope"), KieCheck::KeyRejected("HTTP 401".into()));
        assert_eq!(answer(403, "error code: 1010"), KieCheck::Unavailable("kie HTTP 403 with a non-JSON body".into()));
        assert_eq!(answer(200, r#"{"code":455,"msg":"maintenance"}"#), KieCheck::Unavailable("kie code 455: maintenance".into()));
        assert_eq!(KieCheck::from_credit_call(&Transport::TimedOut), KieCheck::Unavailable("kie timed out".into()));
    }

    #[test]
    fn what_could_not_be_judged_is_left_alone() {
        let mut o = obs();
        o.kie = Some(KieCheck::Unavailable("timed out".into()));
        assert!(undetermined("kie_balance_low", &o) && undetermined("kie_key_rejected", &o));
        o.kie = Some(KieCheck::KeyRejected("401".into()));
        assert!(undetermined("kie_balance_low", &o) && !undetermined("kie_key_rejected", &o));
        o.kie = Some(KieCheck::Balance(1.0));
        assert!(!undetermined("kie_balance_empty", &o) && !undetermined("failures:content_policy", &o));
        o.queue = None;
        assert!(undetermined("queue_stalled", &o) && !undetermined("config_invalid", &o));
    }

    #[test]
    fn rejections_are_classified_from_the_error_cause() {
        for (e, cause) in [
            (WebhookAuthError::BadSignature, "signature"),
            (WebhookAuthError::MissingHeaders, "unsigned"),
            (WebhookAuthError::StaleTimestamp, "timestamp"),
            (WebhookAuthError::BadTimestamp, "timestamp"),
            (WebhookAuthError::MissingTaskId, "no_task_id"),
        ] {
            assert_eq!(rejection_cause(Some(e.reason())), cause);
        }
        assert_eq!(rejection_cause(Some("missing or wrong task token")), "token");
        assert_eq!(rejection_cause(Some("callback taskId belongs to another task")), "task_mismatch");
        assert_eq!(rejection_cause(None), "other");
        assert_eq!(storage_error_event(Some("d1 query: D1_ERROR: no such table")), Some("error.d1"));
        assert_eq!(storage_error_event(Some("r2 put: network")), Some("error.r2"));
        assert_eq!(storage_error_event(Some("kie timed out")), None);
    }

    #[test]
    fn resolved_messages_say_resolved() {
        let mut o = obs();
        o.kie = Some(KieCheck::Balance(2500.0));
        let m = resolved_message("kie_balance_low", 0, 12 * 60_000 + 5_000, &o);
        assert_eq!(m, "Kie balance below the warning threshold — resolved after 12 min; balance now 2500 Kie credits.");
        assert_eq!(
            resolved_message("failures:content_policy", 0, 3_725_000, &o),
            "Tasks failing with content_policy — resolved after 1 h 2 min."
        );
        assert_eq!(plain_number(0.75), "0.75");
        assert_eq!(plain_number(12.0), "12");
        assert_eq!(plain_number(2.5), "2.5");
        assert_eq!(plain_number(0.05), "0.05");
        assert_eq!(plain_number(-3.25), "-3.25");
    }

    #[test]
    fn an_alert_opens_once_stays_quiet_and_resolves_after_staying_clear() {
        let open = |clear_since| Some(OpenAlert { started_at: 0, clear_since });
        assert_eq!(step(None, false, 1000, 120), Step::Nothing);
        assert_eq!(step(None, true, 1000, 120), Step::Open);
        assert_eq!(step(open(None), true, 60_000, 120), Step::Keep);
        assert_eq!(step(open(None), false, 60_000, 120), Step::StartClearing);
        assert_eq!(step(open(Some(60_000)), false, 120_000, 120), Step::Keep);
        assert_eq!(step(open(Some(60_000)), true, 120_000, 120), Step::Reactivate);
        assert_eq!(step(open(Some(60_000)), false, 180_000, 120), Step::Resolve);
        // Without a clearing period, the first clear run resolves.
        assert_eq!(step(open(None), false, 60_000, 0), Step::Resolve);
    }
}

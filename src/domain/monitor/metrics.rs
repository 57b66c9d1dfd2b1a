//! The dashboard's aggregates (`GET /api/admin/metrics`), built from the rows
//! the store reads: hourly task and Kie-call counters with latency buckets,
//! samples of the queue and the Kie balance, and event counters.

use super::alerts::event;
use super::stats::{percentile, HOUR_MS};
use crate::domain::time::rfc3339;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Week,
}

impl Window {
    pub const NAMES: [&'static str; 2] = ["24h", "7d"];

    pub fn parse(s: Option<&str>) -> Option<Window> {
        match s.unwrap_or("24h") {
            "24h" | "" => Some(Window::Day),
            "7d" => Some(Window::Week),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }
    pub fn span_ms(self) -> i64 {
        match self {
            Window::Day => 24 * HOUR_MS,
            Window::Week => 7 * 24 * HOUR_MS,
        }
    }
    /// Width of one bar of the task and credit charts.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Window::Day => HOUR_MS,
            Window::Week => 6 * HOUR_MS,
        }
    }
    pub fn buckets(self) -> i64 {
        self.span_ms() / self.bucket_ms()
    }
    /// Start of the oldest bar: the window ends with the bar holding `now`.
    pub fn first_bucket(self, now: i64) -> i64 {
        let b = self.bucket_ms();
        now.div_euclid(b) * b - (self.buckets() - 1) * b
    }
}

/// Resolution of the queue and balance lines: about 240 points over the time
/// the data covers, on a round interval (a fresh deployment gets a readable
/// line, a week of data one point an hour).
pub fn sample_bucket_ms(window: Window, first_sample_at: Option<i64>, now: i64) -> i64 {
    const NICE_S: [i64; 9] = [10, 30, 60, 120, 300, 600, 900, 1800, 3600];
    let from = now - window.span_ms();
    let span = now - first_sample_at.map_or(from, |f| f.max(from));
    let wanted_s = span / 1000 / 240;
    NICE_S.iter().copied().find(|&s| s >= wanted_s).unwrap_or(3600) * 1000
}

/// A row of `task_hours` (or the same aggregate over tasks not rolled up yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub hour: i64,
    pub model: String,
    /// `succeeded` or a failure code.
    pub outcome: String,
    pub bucket: i64,
    pub tasks: i64,
    pub credits: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KieRow {
    pub op: String,
    pub result: String,
    pub bucket: i64,
    pub calls: i64,
}

/// One point of the queue lines (the most of each interval, grouped by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    pub at: i64,
    pub queued: i64,
    pub at_kie: i64,
    pub oldest_queued_ms: Option<i64>,
    pub overdue: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub kind: String,
    pub count: i64,
}

/// The queue right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueNow {
    pub queued: i64,
    pub at_kie: i64,
    pub oldest_queued_s: Option<i64>,
    pub overdue: i64,
}

pub struct Inputs<'a> {
    pub window: Window,
    pub now: i64,
    pub tasks: &'a [TaskRow],
    pub kie: &'a [KieRow],
    pub samples: &'a [SampleRow],
    /// The Kie balance: (interval, the last balance read in it).
    pub balances: &'a [(i64, f64)],
    pub sample_bucket_ms: i64,
    pub events: &'a [EventRow],
    pub queue: QueueNow,
}

/// (latency bucket, count) pairs.
type Histogram = Vec<(i64, i64)>;
/// Counts by name, sorted by name.
type Counts = Vec<(String, i64)>;

/// A small map kept sorted by key (a handful of models, causes, results).
fn entry<'a, T: Default>(map: &'a mut Vec<(String, T)>, key: &str) -> Option<&'a mut T> {
    let i = match map.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
        Ok(i) => i,
        Err(i) => {
            map.insert(i, (key.to_string(), T::default()));
            i
        }
    };
    map.get_mut(i).map(|(_, v)| v)
}

fn counts_json(map: &[(String, i64)]) -> Value {
    let mut out = Map::new();
    for (k, n) in map {
        out.insert(k.clone(), json!(n));
    }
    Value::Object(out)
}

fn pct(hist: &[(i64, i64)], p: f64) -> Value {
    json!(percentile(hist, p))
}

pub fn build(i: &Inputs) -> Value {
    let first = i.window.first_bucket(i.now);
    let width = i.window.bucket_ms();
    let n = i.window.buckets();
    let slot = |hour: i64| -> Option<usize> {
        let k = (hour - first).div_euclid(width);
        (hour >= first && k < n).then_some(k as usize)
    };

    // Tasks per bar by outcome, credits per bar, latency per model, causes.
    let mut succeeded = vec![0i64; n as usize];
    let mut failed = vec![0i64; n as usize];
    let mut causes_per_bar: Vec<Vec<(String, i64)>> = vec![Vec::new(); n as usize];
    let mut credits = vec![0i64; n as usize];
    let mut latency: Vec<(String, Histogram)> = Vec::new();
    let mut causes: Vec<(String, i64)> = Vec::new();
    for r in i.tasks {
        let Some(k) = slot(r.hour) else { continue };
        if r.outcome == "succeeded" {
            if let Some(v) = succeeded.get_mut(k) {
                *v += r.tasks;
            }
            if let Some(h) = entry(&mut latency, &r.model) {
                h.push((r.bucket, r.tasks));
            }
        } else {
            if let Some(v) = failed.get_mut(k) {
                *v += r.tasks;
            }
            if let Some(c) = causes_per_bar.get_mut(k).and_then(|m| entry(m, &r.outcome)) {
                *c += r.tasks;
            }
            if let Some(c) = entry(&mut causes, &r.outcome) {
                *c += r.tasks;
            }
        }
        if let Some(v) = credits.get_mut(k) {
            *v += r.credits;
        }
    }
    let bar_at = |k: usize| rfc3339(first + k as i64 * width);
    let task_bars: Vec<Value> = (0..n as usize)
        .map(|k| json!({ "at": bar_at(k), "succeeded": succeeded.get(k), "failed": failed.get(k), "by_cause": causes_per_bar.get(k).map(|c| counts_json(c)) }))
        .collect();
    let total_ok: i64 = succeeded.iter().sum();
    let total_failed: i64 = failed.iter().sum();
    let time_to_result: Vec<Value> = latency
        .iter()
        .map(|(model, hist)| {
            json!({ "model": model, "tasks": hist.iter().map(|h| h.1).sum::<i64>(), "p50_ms": pct(hist, 50.0), "p95_ms": pct(hist, 95.0) })
        })
        .collect();
    // Most frequent first (ties by name: the list is sorted by name already).
    let mut cause_list: Counts = Vec::new();
    for c in causes {
        let at = cause_list.iter().position(|x| x.1 < c.1).unwrap_or(cause_list.len());
        cause_list.insert(at, c);
    }

    // Kie calls per operation: latency and results.
    let mut kie: Vec<(String, (Histogram, Counts))> = Vec::new();
    for r in i.kie {
        if let Some((hist, results)) = entry(&mut kie, &r.op) {
            hist.push((r.bucket, r.calls));
            if let Some(c) = entry(results, &r.result) {
                *c += r.calls;
            }
        }
    }
    let kie_calls: Vec<Value> = kie
        .iter()
        .map(|(op, (hist, results))| {
            json!({ "op": op, "calls": results.iter().map(|r| r.1).sum::<i64>(), "p50_ms": pct(hist, 50.0), "p95_ms": pct(hist, 95.0),
                    "results": counts_json(results) })
        })
        .collect();

    let series: Vec<Value> = i
        .samples
        .iter()
        .map(|s| {
            json!({ "at": rfc3339(s.at), "queued": s.queued, "at_kie": s.at_kie,
                    "oldest_queued_s": s.oldest_queued_ms.map(|ms| ms / 1000), "overdue": s.overdue })
        })
        .collect();
    let balance: Vec<Value> = i.balances.iter().map(|(at, b)| json!({ "at": rfc3339(*at), "balance": b })).collect();
    let balance_now = i.balances.last().map(|(_, b)| *b);

    let event = |kind: &str| i.events.iter().filter(|e| e.kind == kind).map(|e| e.count).sum::<i64>();
    let mut rejected = Map::new();
    for e in i.events {
        if let Some(cause) = e.kind.strip_prefix(event::CALLBACK_REJECTED) {
            let v = rejected.entry(cause.to_string()).or_insert(json!(0));
            *v = json!(v.as_i64().unwrap_or(0) + e.count);
        }
    }

    json!({
        "window": i.window.name(),
        "from": rfc3339(i.now - i.window.span_ms()),
        "to": rfc3339(i.now),
        "bucket_ms": width,
        "tasks": { "buckets": task_bars, "total": total_ok + total_failed, "succeeded": total_ok, "failed": total_failed },
        "time_to_result": time_to_result,
        "failure_causes": cause_list.iter().map(|(c, n)| json!({ "cause": c, "count": n })).collect::<Vec<_>>(),
        "kie_calls": kie_calls,
        "credits": {
            "buckets": (0..n as usize).map(|k| json!({ "at": bar_at(k), "spent": credits.get(k) })).collect::<Vec<_>>(),
            "total": credits.iter().sum::<i64>(),
        },
        "queue": {
            "now": { "queued": i.queue.queued, "at_kie": i.queue.at_kie, "oldest_queued_s": i.queue.oldest_queued_s, "overdue": i.queue.overdue },
            "series": series,
            "bucket_ms": i.sample_bucket_ms,
        },
        "kie_balance": { "now": balance_now, "series": balance },
        "events": {
            "callbacks_rejected": rejected,
            "d1_errors": event(event::D1_ERROR),
            "r2_errors": event(event::R2_ERROR),
            "copy_retries": event(event::COPY_RETRY),
            "client_errors": event(event::CLIENT_ERROR),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_786_428_635_123; // 2026-08-11T06:10:35Z

    fn row(hours_ago: i64, model: &str, outcome: &str, bucket: i64, tasks: i64, credits: i64) -> TaskRow {
        TaskRow { hour: (NOW / HOUR_MS - hours_ago) * HOUR_MS, model: model.into(), outcome: outcome.into(), bucket, tasks, credits }
    }

    #[test]
    fn windows() {
        assert_eq!(Window::parse(None), Some(Window::Day));
        assert_eq!(Window::parse(Some("7d")), Some(Window::Week));
        assert_eq!(Window::parse(Some("30d")), None);
        assert_eq!(Window::Day.buckets(), 24);
        assert_eq!(Window::Week.buckets(), 28);
        assert_eq!(rfc3339(Window::Day.first_bucket(NOW)), "2026-08-10T07:00:00.000Z");
        assert_eq!(rfc3339(Window::Week.first_bucket(NOW)), "2026-08-04T12:00:00.000Z");
        assert_eq!(sample_bucket_ms(Window::Day, None, NOW), 600_000);
        assert_eq!(sample_bucket_ms(Window::Week, None, NOW), 3_600_000);
        assert_eq!(sample_bucket_ms(Window::Day, Some(NOW - 90_000), NOW), 10_000);
        assert_eq!(sample_bucket_ms(Window::Day, Some(NOW - 3 * HOUR_MS), NOW), 60_000);
    }

    #[test]
    fn aggregates_from_rows() {
        let tasks = vec![
            row(0, "nano-banana", "succeeded", 4, 3, 6),
            row(0, "nano-banana", "succeeded", 7, 1, 2),
            row(2, "gpt-4o", "succeeded", 6, 2, 6),
            row(0, "nano-banana", "content_policy", 3, 2, 0),
            row(2, "gpt-4o", "provider_failed", 8, 1, 0),
            row(0, "nano-banana", "provider_failed", 8, 1, 0),
            row(30, "nano-banana", "succeeded", 4, 50, 100), // outside 24 h
        ];
        let kie = vec![
            KieRow { op: "create".into(), result: "200".into(), bucket: 2, calls: 9 },
            KieRow { op: "create".into(), result: "402".into(), bucket: 1, calls: 1 },
            KieRow { op: "record".into(), result: "timeout".into(), bucket: 13, calls: 2 },
        ];
        let samples = vec![
            SampleRow { at: NOW - 60_000, queued: 3, at_kie: 1, oldest_queued_ms: Some(12_000), overdue: 0 },
            SampleRow { at: NOW, queued: 0, at_kie: 2, oldest_queued_ms: None, overdue: 0 },
        ];
        let events = vec![
            EventRow { kind: "callback.rejected.signature".into(), count: 2 },
            EventRow { kind: "callback.rejected.signature".into(), count: 1 },
            EventRow { kind: "error.d1".into(), count: 4 },
        ];
        let v = build(&Inputs {
            window: Window::Day,
            now: NOW,
            tasks: &tasks,
            kie: &kie,
            samples: &samples,
            balances: &[(NOW - 60_000, 100.0)],
            sample_bucket_ms: 10_000,
            events: &events,
            queue: QueueNow { queued: 0, at_kie: 2, oldest_queued_s: None, overdue: 0 },
        });
        assert_eq!(v["tasks"]["buckets"].as_array().unwrap().len(), 24);
        assert_eq!(
            v["tasks"]["buckets"][23],
            json!({ "at": "2026-08-11T06:00:00.000Z", "succeeded": 4, "failed": 3, "by_cause": { "content_policy": 2, "provider_failed": 1 } })
        );
        assert_eq!(v["tasks"]["buckets"][21]["succeeded"], 2);
        assert_eq!((v["tasks"]["total"].as_i64(), v["tasks"]["failed"].as_i64()), (Some(10), Some(4)));
        assert_eq!(v["credits"]["total"], 14);
        assert_eq!(v["credits"]["buckets"][23]["spent"], 8);
        assert_eq!(v["failure_causes"], json!([{ "cause": "content_policy", "count": 2 }, { "cause": "provider_failed", "count": 2 }]));
        assert_eq!(v["time_to_result"][0]["model"], "gpt-4o");
        assert_eq!(v["time_to_result"][1], json!({ "model": "nano-banana", "tasks": 4, "p50_ms": 1_667, "p95_ms": 7_000 }));
        assert_eq!(v["kie_calls"][0]["calls"], 10);
        assert_eq!(v["kie_calls"][0]["results"], json!({ "200": 9, "402": 1 }));
        assert_eq!(v["kie_calls"][1]["p50_ms"], 52_500);
        assert_eq!(v["queue"]["series"][0]["oldest_queued_s"], 12);
        assert_eq!(v["kie_balance"]["series"].as_array().unwrap().len(), 1);
        assert_eq!(v["kie_balance"]["now"], 100.0);
        assert_eq!(v["events"]["callbacks_rejected"], json!({ "signature": 3 }));
        assert_eq!(v["events"]["d1_errors"], 4);
    }
}

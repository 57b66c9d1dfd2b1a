//! Counting for the dashboard: latency histograms (fixed buckets, so hours
//! and isolates add up), percentiles read from them, and the counters an
//! isolate collects between two writes to D1.

pub const HOUR_MS: i64 = 3_600_000;
pub const MINUTE_MS: i64 = 60_000;

/// Upper bounds (exclusive, ms) of the latency buckets; bucket `i` holds
/// durations below `LATENCY_BOUNDS_MS[i]`, the last bucket everything above.
pub const LATENCY_BOUNDS_MS: &[i64] = &[
    100, 250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000,
    600_000, 900_000, 1_800_000,
];

pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

pub fn bucket_of(ms: i64) -> i64 {
    LATENCY_BOUNDS_MS.iter().position(|&b| ms < b).unwrap_or(LATENCY_BOUNDS_MS.len()) as i64
}

/// The same bucketing in SQL, for a duration expression over trusted columns.
pub fn bucket_sql(duration: &str) -> String {
    let mut sql = String::from("CASE");
    for (i, b) in LATENCY_BOUNDS_MS.iter().enumerate() {
        sql.push_str(&format!(" WHEN {duration} < {b} THEN {i}"));
    }
    sql.push_str(&format!(" ELSE {} END", LATENCY_BOUNDS_MS.len()));
    sql
}

/// The `p`-th percentile (0 < p ≤ 100) of a histogram given as (bucket,
/// count) pairs, interpolated linearly inside its bucket; `None` when empty.
pub fn percentile(hist: &[(i64, i64)], p: f64) -> Option<i64> {
    let mut counts = vec![0i64; LATENCY_BOUNDS_MS.len() + 1];
    for &(b, n) in hist {
        if let Some(c) = counts.get_mut(b.clamp(0, LATENCY_BOUNDS_MS.len() as i64) as usize) {
            *c += n.max(0);
        }
    }
    let total: i64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (p / 100.0 * total as f64).max(1.0);
    let mut seen = 0i64;
    for (b, &n) in counts.iter().enumerate().filter(|(_, &n)| n > 0) {
        let b = b as i64;
        if (seen + n) as f64 >= rank {
            let lower = if b == 0 { 0 } else { LATENCY_BOUNDS_MS.get(b as usize - 1).copied().unwrap_or(0) };
            let Some(&upper) = LATENCY_BOUNDS_MS.get(b as usize) else { return Some(lower) };
            let within = (rank - seen as f64) / n as f64;
            return Some(lower + ((upper - lower) as f64 * within).round() as i64);
        }
        seen += n;
    }
    None
}

/// What a call to Kie came to, as the dashboard counts it: Kie's business
/// code when the body had one (`200`, `401`, `402`…), else the HTTP status
/// (`http 503`), else `timeout` / `unreachable`.
pub fn kie_result(http_status: Option<u16>, kie_code: Option<i64>, timed_out: bool) -> String {
    match (kie_code, http_status) {
        (Some(code), _) => code.to_string(),
        (None, Some(status)) => format!("http {status}"),
        (None, None) if timed_out => "timeout".into(),
        (None, None) => "unreachable".into(),
    }
}

/// A counter the isolate keeps until it is written to D1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counter {
    /// One call to Kie: (hour, operation, result, latency bucket).
    KieCall { hour: i64, op: String, result: String, bucket: i64 },
    /// An event counted per minute (`callback.rejected.signature`, `error.d1`…).
    Event { minute: i64, kind: String },
}

/// Counters collected between two writes; bounded so a D1 outage cannot
/// grow it without limit (what does not fit is dropped and counted).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// In the order first seen (a few dozen at most between two flushes).
    counts: Vec<(Counter, i64)>,
    pub dropped: i64,
}

pub const TALLY_MAX_KEYS: usize = 2_000;

impl Tally {
    pub fn add(&mut self, counter: Counter, n: i64) {
        if let Some((_, count)) = self.counts.iter_mut().find(|(c, _)| *c == counter) {
            *count += n;
        } else if self.counts.len() >= TALLY_MAX_KEYS {
            self.dropped += n;
        } else {
            self.counts.push((counter, n));
        }
    }
    pub fn kie_call(&mut self, now: i64, op: &str, result: &str, latency_ms: i64) {
        self.add(Counter::KieCall { hour: hour_of(now), op: op.into(), result: result.into(), bucket: bucket_of(latency_ms) }, 1);
    }
    pub fn event(&mut self, now: i64, kind: &str) {
        self.add(Counter::Event { minute: minute_of(now), kind: kind.into() }, 1);
    }
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
    /// Whether it holds an event (what the alert rules read: worth writing at once).
    pub fn has_events(&self) -> bool {
        self.counts.iter().any(|(c, _)| matches!(c, Counter::Event { .. }))
    }
    pub fn len(&self) -> usize {
        self.counts.len()
    }
    /// Adds another tally's counts (e.g. a write that failed, put back).
    pub fn merge(&mut self, other: Tally) {
        for (k, n) in other.counts {
            self.add(k, n);
        }
        self.dropped += other.dropped;
    }
    pub fn entries(&self) -> impl Iterator<Item = (&Counter, i64)> {
        self.counts.iter().map(|(k, n)| (k, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_their_sql_agree() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(99), 0);
        assert_eq!(bucket_of(100), 1);
        assert_eq!(bucket_of(1_500), 4);
        assert_eq!(bucket_of(10_000_000), LATENCY_BOUNDS_MS.len() as i64);
        let sql = bucket_sql("d");
        assert!(sql.starts_with("CASE WHEN d < 100 THEN 0 WHEN d < 250 THEN 1"));
        assert!(sql.ends_with(&format!("ELSE {} END", LATENCY_BOUNDS_MS.len())));
        assert!(LATENCY_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket() {
        // 10 tasks between 1 s and 2 s (bucket 4), 10 between 5 s and 7.5 s (bucket 7).
        let hist = [(4, 10), (7, 10)];
        assert_eq!(percentile(&hist, 50.0), Some(2_000));
        assert_eq!(percentile(&hist, 95.0), Some(7_250));
        assert_eq!(percentile(&hist, 5.0), Some(1_100));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[(3, 0)], 50.0), None);
        // Everything in the open-ended bucket: its lower bound.
        assert_eq!(percentile(&[(LATENCY_BOUNDS_MS.len() as i64, 3)], 95.0), Some(1_800_000));
        // One sample: the rank is at least 1.
        assert_eq!(percentile(&[(0, 1)], 50.0), Some(100));
        // Split rows of one bucket add up.
        assert_eq!(percentile(&[(4, 5), (7, 10), (4, 5)], 50.0), percentile(&hist, 50.0));
    }

    #[test]
    fn kie_results_prefer_the_business_code() {
        assert_eq!(kie_result(Some(200), Some(402), false), "402");
        assert_eq!(kie_result(Some(503), None, false), "http 503");
        assert_eq!(kie_result(None, None, true), "timeout");
        assert_eq!(kie_result(None, None, false), "unreachable");
    }

    #[test]
    fn tallies_aggregate_merge_and_stay_bounded() {
        let mut t = Tally::default();
        let now = 3 * HOUR_MS + 5 * MINUTE_MS + 7;
        t.kie_call(now, "create", "200", 300);
        t.kie_call(now + 1000, "create", "200", 400);
        t.kie_call(now, "create", "200", 3_000);
        t.event(now, "error.d1");
        t.event(now + 30_000, "error.d1");
        let got: Vec<_> = t.entries().map(|(k, n)| (k.clone(), n)).collect();
        assert_eq!(
            got,
            vec![
                (Counter::KieCall { hour: 3 * HOUR_MS, op: "create".into(), result: "200".into(), bucket: 2 }, 2),
                (Counter::KieCall { hour: 3 * HOUR_MS, op: "create".into(), result: "200".into(), bucket: 6 }, 1),
                (Counter::Event { minute: 3 * HOUR_MS + 5 * MINUTE_MS, kind: "error.d1".into() }, 2),
            ]
        );
        let mut calls = Tally::default();
        calls.kie_call(now, "record", "200", 10);
        assert!(!calls.has_events() && t.has_events());
        let mut other = Tally::default();
        other.event(now, "error.d1");
        t.merge(other);
        assert_eq!(t.entries().last().map(|(_, n)| n), Some(3));

        let mut full = Tally::default();
        for i in 0..(TALLY_MAX_KEYS as i64 + 5) {
            full.event(i * MINUTE_MS, "x");
        }
        assert_eq!(full.len(), TALLY_MAX_KEYS);
        assert_eq!(full.dropped, 5);
    }
}

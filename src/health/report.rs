//! What the API and metrics read about one backend's health: state, since
//! when, score, counters, and the last [`HISTORY`] results.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use super::{Cause, Outcome, Verdict};

/// Results kept per backend.
pub const HISTORY: usize = 10;

/// Upper bounds (seconds) of the check duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];

/// One recorded check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Unix time in milliseconds when the check ended.
    pub at_ms: u64,
    pub duration_ms: f64,
    pub verdict: Verdict,
    pub cause: Cause,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Check kind (`none` = always healthy, nothing recorded).
    pub kind: String,
    pub healthy: bool,
    /// Unix ms of the last transition (or of creation).
    pub since_ms: u64,
    /// Percent; 100/0 by state when score windows are off.
    pub score: u32,
    /// Last measured round-trip time (ICMP).
    pub rtt_ms: Option<f64>,
    pub checks: u64,
    /// Results per [`Cause`], in [`Cause::ALL`] order.
    #[serde(skip)]
    pub by_cause: [u64; Cause::ALL.len()],
    /// Check durations per [`DURATION_BUCKETS`] bucket (not cumulative), last = +Inf.
    #[serde(skip)]
    pub duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    #[serde(skip)]
    pub duration_sum: f64,
    /// Oldest first.
    pub history: VecDeque<Record>,
}

impl Report {
    pub fn new(kind: &str, healthy: bool, now_ms: u64) -> Self {
        Self {
            kind: kind.to_string(),
            healthy,
            since_ms: now_ms,
            score: if healthy { 100 } else { 0 },
            rtt_ms: None,
            checks: 0,
            by_cause: [0; Cause::ALL.len()],
            duration_buckets: [0; DURATION_BUCKETS.len() + 1],
            duration_sum: 0.0,
            history: VecDeque::with_capacity(HISTORY),
        }
    }

    /// Record a finished check; `healthy`/`score` are the machine's state after it.
    pub fn push(
        &mut self,
        outcome: &Outcome,
        took: Duration,
        now_ms: u64,
        healthy: bool,
        score: u32,
    ) {
        if healthy != self.healthy {
            self.since_ms = now_ms;
        }
        self.healthy = healthy;
        self.score = score;
        self.checks += 1;
        if let Some(i) = Cause::ALL.iter().position(|c| *c == outcome.cause) {
            self.by_cause[i] += 1;
        }
        let secs = took.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.duration_buckets[bucket] += 1;
        self.duration_sum += secs;
        let rtt_ms = outcome.rtt.map(|r| r.as_secs_f64() * 1000.0);
        if rtt_ms.is_some() {
            self.rtt_ms = rtt_ms;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Record {
            at_ms: now_ms,
            duration_ms: secs * 1000.0,
            verdict: outcome.verdict,
            cause: outcome.cause,
            detail: outcome.detail.clone(),
            output: outcome.output.clone(),
            rtt_ms,
        });
    }
}

impl Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_ten_and_tracks_since() {
        let mut r = Report::new("ping", true, 5);
        for i in 0..15u64 {
            let o = Outcome::fail(Cause::Refused, format!("try {i}"));
            r.push(&o, Duration::from_millis(3), 100 + i, i < 3, 0);
        }
        assert_eq!(r.history.len(), HISTORY);
        assert_eq!(r.history[0].detail, "try 5");
        assert_eq!(r.since_ms, 103, "went down at the fourth check");
        assert_eq!(r.checks, 15);
        assert_eq!(r.by_cause[1], 15);
        assert_eq!(r.duration_buckets[1], 15, "3 ms is in the 5 ms bucket");
    }

    #[test]
    fn serializes_labels() {
        let mut r = Report::new("icmp", true, 0);
        let o = Outcome::pass("3/3 replies").with_rtt(Some(Duration::from_micros(1500)));
        r.push(&o, Duration::from_millis(2), 1, true, 100);
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(json.contains(r#""verdict":"pass""#), "{json}");
        assert!(json.contains(r#""cause":"ok""#), "{json}");
        assert!(json.contains(r#""rtt_ms":1.5"#), "{json}");
    }
}

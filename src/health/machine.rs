//! The health state machine: pure, no clock, no I/O.
//!
//! - **Thresholds** (`fails`, `passes`): a healthy backend goes down after
//!   `fails` *truly consecutive* failures, a down one comes up after `passes`
//!   consecutive successes. Any opposite result resets the count.
//!   (gobetween does not reset: with `fails = 3`, F S F S F marks it down.)
//! - **Score window** (`score_window = N > 0`): score = successes among the
//!   last N results (fewer until N are recorded), in percent. While it is on,
//!   the backend is healthy exactly while its score is above 0; thresholds
//!   are not used.
//! - [`Verdict::Unknown`] results (an `exec` check printing neither expected
//!   output) change nothing here.
//! - **Timing**: `interval` while stable and up, `fast_interval` while a
//!   transition is being counted, `down_interval` while down; each spread by
//!   ±`jitter` percent. The first check runs at once, or after a random
//!   offset within `jitter` percent of the interval when jitter is set.

use std::collections::VecDeque;
use std::time::Duration;

use super::Verdict;
use crate::config::Healthcheck;

/// Shortest delay between two checks of one target, whatever the jitter.
const MIN_DELAY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub fails: u32,
    pub passes: u32,
    pub score_window: u32,
    pub interval: Duration,
    pub fast_interval: Duration,
    pub down_interval: Duration,
    /// Percent, 0..=100.
    pub jitter: u8,
}

impl Rules {
    /// `None` for kind `none` (no interval: nothing to schedule).
    pub fn of(hc: &Healthcheck) -> Option<Self> {
        let interval = hc.interval?;
        Some(Self {
            fails: hc.fails.max(1),
            passes: hc.passes.max(1),
            score_window: hc.score_window,
            interval,
            fast_interval: hc.fast_interval.unwrap_or(interval),
            down_interval: hc.down_interval.unwrap_or(interval),
            jitter: hc.jitter.min(100),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    rules: Rules,
    healthy: bool,
    ok_streak: u32,
    fail_streak: u32,
    window: VecDeque<bool>,
}

impl Machine {
    pub fn new(rules: Rules, healthy: bool) -> Self {
        let cap = rules.score_window as usize;
        Self {
            rules,
            healthy,
            ok_streak: 0,
            fail_streak: 0,
            window: VecDeque::with_capacity(cap.min(1024)),
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Record one result; `Some(new state)` when it causes a transition.
    pub fn record(&mut self, verdict: Verdict) -> Option<bool> {
        let ok = match verdict {
            Verdict::Pass => true,
            Verdict::Fail => false,
            Verdict::Unknown => return None,
        };
        if ok {
            self.ok_streak = self.ok_streak.saturating_add(1);
            self.fail_streak = 0;
        } else {
            self.fail_streak = self.fail_streak.saturating_add(1);
            self.ok_streak = 0;
        }
        let next = if self.rules.score_window > 0 {
            self.push_window(ok);
            self.score() > 0
        } else if self.healthy {
            self.fail_streak < self.rules.fails
        } else {
            self.ok_streak >= self.rules.passes
        };
        if next == self.healthy {
            return None;
        }
        self.healthy = next;
        self.ok_streak = 0;
        self.fail_streak = 0;
        Some(next)
    }

    fn push_window(&mut self, ok: bool) {
        if self.window.len() == self.rules.score_window as usize {
            self.window.pop_front();
        }
        self.window.push_back(ok);
    }

    /// Successes in the window, in percent, at least 1 while there is one
    /// (so score > 0 exactly while a success is in the window, also for
    /// windows over 100); 100 when score windows are off (or nothing is
    /// recorded yet) and the backend is healthy, else 0.
    pub fn score(&self) -> u32 {
        if self.rules.score_window == 0 || self.window.is_empty() {
            return if self.healthy { 100 } else { 0 };
        }
        let ok = self.window.iter().filter(|ok| **ok).count();
        match ok * 100 / self.window.len() {
            0 if ok > 0 => 1,
            pct => pct as u32,
        }
    }

    /// A transition is being counted (only with thresholds above 1).
    pub fn pending(&self) -> bool {
        self.rules.score_window == 0
            && if self.healthy {
                self.fail_streak > 0
            } else {
                self.ok_streak > 0
            }
    }

    /// Delay before the next check; `random` is any uniformly random u64.
    pub fn next_delay(&self, random: u64) -> Duration {
        let base = if self.pending() {
            self.rules.fast_interval
        } else if !self.healthy {
            self.rules.down_interval
        } else {
            self.rules.interval
        };
        spread(base, self.rules.jitter, random)
    }

    /// Delay before the first check: at once, or a random part of the
    /// jitter share of the interval.
    pub fn first_delay(&self, random: u64) -> Duration {
        let share = self
            .rules
            .interval
            .mul_f64(f64::from(self.rules.jitter) / 100.0);
        share.mul_f64(unit(random))
    }
}

/// `base` ± `jitter` percent, never below [`MIN_DELAY`].
fn spread(base: Duration, jitter: u8, random: u64) -> Duration {
    if jitter == 0 {
        return base.max(MIN_DELAY);
    }
    let j = f64::from(jitter) / 100.0;
    let factor = 1.0 + j * (2.0 * unit(random) - 1.0);
    base.mul_f64(factor.max(0.0)).max(MIN_DELAY)
}

/// A u64 mapped to [0, 1).
fn unit(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Fail as F, Pass as P, Unknown as U};

    fn rules(fails: u32, passes: u32, window: u32) -> Rules {
        Rules {
            fails,
            passes,
            score_window: window,
            interval: Duration::from_secs(10),
            fast_interval: Duration::from_secs(2),
            down_interval: Duration::from_secs(30),
            jitter: 0,
        }
    }

    /// Feed results; return the state after each.
    fn run(m: &mut Machine, results: &[Verdict]) -> Vec<bool> {
        results
            .iter()
            .map(|v| {
                m.record(*v);
                m.healthy()
            })
            .collect()
    }

    #[test]
    fn fails_must_be_consecutive() {
        let mut m = Machine::new(rules(3, 1, 0), true);
        // gobetween would mark this down at the fifth result.
        assert_eq!(run(&mut m, &[F, P, F, P, F]), [true; 5]);
        assert_eq!(run(&mut m, &[F, F]), [true, false]);
    }

    #[test]
    fn flapping_every_other_probe_never_goes_down_with_fails_2() {
        let mut m = Machine::new(rules(2, 1, 0), true);
        let flaps: Vec<Verdict> = (0..100).map(|i| if i % 2 == 0 { F } else { P }).collect();
        assert!(run(&mut m, &flaps).iter().all(|h| *h));
    }

    #[test]
    fn passes_must_be_consecutive_and_transitions_are_reported_once() {
        let mut m = Machine::new(rules(1, 2, 0), false);
        assert_eq!(m.record(P), None);
        assert_eq!(m.record(F), None);
        assert_eq!(m.record(P), None);
        assert_eq!(m.record(P), Some(true));
        assert_eq!(m.record(P), None);
        assert_eq!(m.record(F), Some(false));
        assert_eq!(m.record(F), None);
    }

    #[test]
    fn unknown_changes_nothing() {
        let mut m = Machine::new(rules(2, 2, 0), true);
        m.record(F);
        assert_eq!(m.record(U), None);
        assert!(m.pending());
        assert_eq!(m.record(F), Some(false));
    }

    #[test]
    fn score_window_counts_the_last_n() {
        let mut m = Machine::new(rules(5, 5, 4), true);
        assert_eq!(m.score(), 100);
        m.record(P);
        m.record(F);
        assert_eq!(m.score(), 50);
        m.record(F);
        m.record(F);
        assert_eq!(m.score(), 25);
        assert!(m.healthy());
        assert_eq!(m.record(F), Some(false), "window now F F F F");
        assert_eq!(m.score(), 0);
        assert_eq!(m.record(P), Some(true), "any success brings it back");
        assert_eq!(m.score(), 25);
    }

    #[test]
    fn one_success_in_a_window_over_100_keeps_the_backend_up() {
        let mut m = Machine::new(rules(5, 5, 200), true);
        m.record(P);
        for _ in 0..199 {
            m.record(F);
        }
        assert!(m.healthy(), "1 success of 200: score above 0");
        assert_eq!(m.score(), 1, "rounded up to the smallest share");
        assert_eq!(m.record(F), Some(false), "no success left");
    }

    #[test]
    fn intervals_follow_the_state() {
        let mut m = Machine::new(rules(2, 2, 0), true);
        assert_eq!(m.next_delay(0), Duration::from_secs(10));
        m.record(F);
        assert_eq!(m.next_delay(0), Duration::from_secs(2), "pending");
        m.record(F);
        assert_eq!(m.next_delay(0), Duration::from_secs(30), "down");
        m.record(P);
        assert_eq!(m.next_delay(0), Duration::from_secs(2), "pending up");
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let mut r = rules(1, 1, 0);
        r.jitter = 20;
        let m = Machine::new(r, true);
        let lo = m.next_delay(0);
        let hi = m.next_delay(u64::MAX);
        assert!(lo >= Duration::from_secs(8) && lo < Duration::from_millis(8001));
        assert!(hi > Duration::from_millis(11_999) && hi <= Duration::from_secs(12));
        assert!(m.first_delay(u64::MAX) <= Duration::from_secs(2));
        assert_eq!(m.first_delay(0), Duration::ZERO);
    }

    #[test]
    fn without_jitter_the_first_check_runs_at_once() {
        let m = Machine::new(rules(1, 1, 0), true);
        assert_eq!(m.first_delay(u64::MAX), Duration::ZERO);
    }

    #[test]
    fn full_jitter_never_yields_zero() {
        let mut r = rules(1, 1, 0);
        r.jitter = 100;
        assert_eq!(Machine::new(r, true).next_delay(0), MIN_DELAY);
    }
}

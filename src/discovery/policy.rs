//! What a discovery task does after each fetch: pure decisions, time-free.
//!
//! - Success: send the list if it differs from the last one sent; wait
//!   `interval`, or stop for good when there is none (gobetween's "0").
//! - Error: `setempty` sends an empty list, `keeplast` sends nothing (the
//!   last good list keeps serving); then wait [`retry_wait`] and try again,
//!   even when `interval` is "0" (a fetch-once source retries until it
//!   succeeds once).

use std::collections::HashSet;
use std::time::Duration;

use super::{BackendSpec, Listing};
use crate::config::FailPolicy;

/// gobetween's fixed wait before retrying a failed fetch.
pub const RETRY_WAIT: Duration = Duration::from_secs(2);

/// The wait after an error: 2 s, or the interval when it is shorter.
pub fn retry_wait(interval: Option<Duration>) -> Duration {
    interval.map_or(RETRY_WAIT, |i| i.min(RETRY_WAIT))
}

/// The next move of a discovery task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// A new list to hand to the server.
    pub send: Option<Vec<BackendSpec>>,
    /// How long to wait before the next fetch; `None` = stop.
    pub wait: Option<Duration>,
}

/// Decide after one fetch. `last` is the list sent last (`None` before the
/// first one).
pub fn step(
    policy: FailPolicy,
    interval: Option<Duration>,
    result: Result<Vec<BackendSpec>, String>,
    last: Option<&[BackendSpec]>,
) -> Step {
    let changed = |list: &[BackendSpec]| last != Some(list);
    match result {
        Ok(list) => Step {
            send: changed(&list).then_some(list),
            wait: interval,
        },
        Err(_) => Step {
            send: (policy == FailPolicy::SetEmpty && changed(&[])).then(Vec::new),
            wait: Some(retry_wait(interval)),
        },
    }
}

/// The list in one canonical form: repeated `host:port` entries dropped
/// (the first one wins), then sorted by key, so that a source answering
/// the same backends in another order (dnsmasq rotates SRV records) is no
/// change. A host that is neither an IP literal nor a host name is dropped
/// too ([`super::check_host`]). Returns the list and one message per
/// dropped entry.
pub fn canonical(list: Vec<BackendSpec>) -> (Vec<BackendSpec>, Vec<String>, usize) {
    let mut seen = HashSet::new();
    let (mut dropped, mut more) = (Vec::new(), 0);
    let mut out = Vec::with_capacity(list.len());
    for spec in list {
        if let Err(e) = super::check_host(&spec.host) {
            note(&mut dropped, &mut more, || format!("backend skipped: {e}"));
        } else if seen.insert(spec.key()) {
            out.push(spec);
        } else {
            let why = || format!("duplicate backend {} ignored", spec.key());
            note(&mut dropped, &mut more, why);
        }
    }
    out.sort_by_cached_key(BackendSpec::key);
    if out.len() > MAX_BACKENDS {
        let why = format!(
            "{} backends: only the first {MAX_BACKENDS} (by host:port) are used",
            out.len()
        );
        out.truncate(MAX_BACKENDS);
        dropped.insert(0, why);
    }
    (out, dropped, more)
}

/// Most backends one discovery answer gives a server: each costs its state
/// and, with a health check, a task, so a runaway source must not take the
/// daemon's memory.
pub const MAX_BACKENDS: usize = 10_000;

/// Warnings kept per fetch; more are counted, not kept.
pub const MAX_KEPT: usize = 100;

/// Keep `why` while fewer than [`MAX_KEPT`] are kept, else count it.
pub fn note(warnings: &mut Vec<String>, more: &mut usize, why: impl FnOnce() -> String) {
    if warnings.len() < MAX_KEPT {
        warnings.push(why());
    } else {
        *more = more.saturating_add(1);
    }
}

/// A line-format answer as the result of a fetch. When no line is a
/// backend but some were not blank, the answer is malformed (an error page
/// served with status 200, a message printed by a script): the fetch
/// fails, so `keeplast` keeps the last good list. No lines at all is an
/// empty list.
pub fn lines_result(listing: Listing) -> Result<Listing, String> {
    match listing.warnings.first() {
        Some(first) if listing.specs.is_empty() => Err(format!(
            "no line is a backend ({} skipped; {})",
            listing.warnings.len() + listing.more_warnings,
            cut(first)
        )),
        _ => Ok(listing),
    }
}

/// Most warnings of one fetch written to the log.
pub const MAX_LOGGED: usize = 10;
/// Most characters of one logged warning.
pub const MAX_CHARS: usize = 240;

/// The log lines for a fetch's warnings (and `more` only counted): the
/// first [`MAX_LOGGED`], each cut to [`MAX_CHARS`], then how many more.
pub fn to_log(warnings: &[String], more: usize) -> Vec<String> {
    let mut out: Vec<String> = warnings.iter().take(MAX_LOGGED).map(|w| cut(w)).collect();
    let left = warnings
        .len()
        .saturating_sub(MAX_LOGGED)
        .saturating_add(more);
    if left > 0 {
        out.push(format!("and {left} more skipped"));
    }
    out
}

/// `text` cut to [`MAX_CHARS`] characters (and a `…`).
pub fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Parse text in the backend line format, one backend per line; blank
/// lines are skipped, bad ones reported (the fetch still succeeds).
pub fn parse_lines(text: &str) -> Listing {
    let mut listing = Listing::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match super::static_list::parse_line(line) {
            Ok(spec) => listing.specs.push(spec),
            Err(e) => listing.warn(|| format!("line {}: {e}; skipped", n + 1)),
        }
    }
    listing
}

/// A run of failed fetches logs its first failure, each failure whose
/// message changed, and then one line per [`RELOG_EVERY`] with the number
/// left out (a source down for a day at a 1 s interval wrote 86,400 lines).
pub const RELOG_EVERY: Duration = Duration::from_secs(60);

/// Which failures of a run are logged. Pure: time is passed in (ms).
#[derive(Debug, Default)]
pub struct FailureLog {
    last: Option<String>,
    throttle: crate::log::Throttle,
    run: u64,
}

impl FailureLog {
    /// A fetch failed with `e` at `now`: `Some(failures left out since the
    /// last line)` when this one is to be logged.
    pub fn failed(&mut self, e: &str, now: u64) -> Option<u64> {
        self.run += 1;
        let changed = self.last.as_deref() != Some(e);
        if changed {
            self.last = Some(e.to_string());
        }
        let every = RELOG_EVERY.as_millis() as u64;
        self.throttle.pass_if(changed, now, every)
    }

    /// A fetch succeeded: the length of the run of failures it ended, if any.
    pub fn succeeded(&mut self) -> Option<u64> {
        let run = std::mem::take(self).run;
        (run > 0).then_some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_is_logged_at_its_start_on_change_and_once_a_minute() {
        let mut log = FailureLog::default();
        assert_eq!(log.succeeded(), None);
        assert_eq!(log.failed("refused", 0), Some(0));
        assert_eq!(log.failed("refused", 1_000), None);
        assert_eq!(log.failed("refused", 2_000), None);
        assert_eq!(log.failed("timed out", 3_000), Some(2), "a new message");
        assert_eq!(log.failed("timed out", 4_000), None);
        assert_eq!(log.failed("timed out", 63_000), Some(1), "a minute on");
        assert_eq!(log.succeeded(), Some(6));
        assert_eq!(log.failed("timed out", 64_000), Some(0), "a new run");
    }
    use crate::discovery::static_list::parse_line;

    fn list(lines: &[&str]) -> Vec<BackendSpec> {
        lines.iter().map(|l| parse_line(l).unwrap()).collect()
    }

    const MIN: Option<Duration> = Some(Duration::from_secs(60));

    #[test]
    fn success_sends_changes_only_and_waits_interval() {
        let a = list(&["a:1"]);
        let s = step(FailPolicy::KeepLast, MIN, Ok(a.clone()), None);
        assert_eq!(s.send, Some(a.clone()));
        assert_eq!(s.wait, MIN);
        let s = step(FailPolicy::KeepLast, MIN, Ok(a.clone()), Some(&a));
        assert_eq!(s.send, None);
        let b = list(&["a:1 weight=2"]);
        let s = step(FailPolicy::KeepLast, MIN, Ok(b.clone()), Some(&a));
        assert_eq!(s.send, Some(b), "a changed weight is a change");
        // An empty first answer is sent (the server learns it is empty).
        let s = step(FailPolicy::KeepLast, MIN, Ok(vec![]), None);
        assert_eq!(s.send, Some(vec![]));
    }

    #[test]
    fn fetch_once_stops_after_success_but_retries_errors() {
        let s = step(FailPolicy::KeepLast, None, Ok(list(&["a:1"])), None);
        assert_eq!(s.wait, None);
        let s = step(FailPolicy::KeepLast, None, Err("down".into()), None);
        assert_eq!(s.wait, Some(RETRY_WAIT));
    }

    #[test]
    fn errors_keep_or_empty_per_policy() {
        let a = list(&["a:1"]);
        let s = step(FailPolicy::KeepLast, MIN, Err("x".into()), Some(&a));
        assert_eq!(
            s,
            Step {
                send: None,
                wait: Some(RETRY_WAIT)
            }
        );
        let s = step(FailPolicy::SetEmpty, MIN, Err("x".into()), Some(&a));
        assert_eq!(s.send, Some(vec![]));
        let s = step(FailPolicy::SetEmpty, MIN, Err("x".into()), Some(&[]));
        assert_eq!(s.send, None, "already empty");
        let short = Some(Duration::from_millis(300));
        let s = step(FailPolicy::KeepLast, short, Err("x".into()), Some(&a));
        assert_eq!(s.wait, short, "retry no later than the interval");
    }

    #[test]
    fn canonical_keeps_first() {
        let (out, dropped, _) = canonical(list(&["a:1 weight=3", "b:1", "a:1"]));
        assert_eq!(out, list(&["a:1 weight=3", "b:1"]));
        assert_eq!(dropped.len(), 1);
    }

    #[test]
    fn canonical_skips_hosts_that_are_not_addresses_or_names() {
        let mut specs = list(&["a:1", "b:1"]);
        specs[1].host = "127.0.0.1 evil".into();
        let (out, dropped, _) = canonical(specs);
        assert_eq!(out, list(&["a:1"]));
        assert_eq!(
            dropped,
            ["backend skipped: `127.0.0.1 evil` is not an IP address or host name"]
        );
    }

    /// Sources that shuffle their answers (dnsmasq rotates SRV records)
    /// must not count as a change at every fetch.
    #[test]
    fn a_runaway_answer_is_cut_to_the_first_backends_by_key() {
        let many: Vec<String> = (0..MAX_BACKENDS + 5)
            .rev()
            .map(|i| format!("127.0.0.1:{}", 1 + i))
            .collect();
        let lines: Vec<&str> = many.iter().map(String::as_str).collect();
        let (out, dropped, _) = canonical(list(&lines));
        assert_eq!(out.len(), MAX_BACKENDS);
        assert_eq!(out[0].key(), "127.0.0.1:1");
        assert_eq!(
            dropped,
            [format!(
                "{} backends: only the first {MAX_BACKENDS} (by host:port) are used",
                MAX_BACKENDS + 5
            )]
        );
    }

    #[test]
    fn reordered_list_is_no_change() {
        let (first, ..) = canonical(list(&["b:1", "a:1 weight=2", "c:1"]));
        let (again, ..) = canonical(list(&["c:1", "b:1", "a:1 weight=2"]));
        let s = step(FailPolicy::KeepLast, MIN, Ok(again), Some(&first));
        assert_eq!(s.send, None, "the same backends in another order");
    }

    /// A source printing megabytes of bad lines (or one huge line) must not
    /// flood the log: ten messages at most, each cut short, then a count.
    #[test]
    fn logged_warnings_are_bounded() {
        let many: Vec<String> = (0..20_000).map(|i| format!("line {i}: bad")).collect();
        let shown = to_log(&many, 5);
        assert_eq!(shown.len(), MAX_LOGGED + 1);
        assert_eq!(shown[0], "line 0: bad");
        assert_eq!(shown[MAX_LOGGED], "and 19995 more skipped");
        let huge = vec![format!(
            "line 1: `{}`: expected host:port",
            "é".repeat(1 << 20)
        )];
        let shown = to_log(&huge, 0);
        assert_eq!(shown.len(), 1);
        assert!(
            shown[0].chars().count() <= MAX_CHARS + 1,
            "{}",
            shown[0].len()
        );
        assert!(shown[0].ends_with('…'));
        assert_eq!(to_log(&many[..2], 0), many[..2].to_vec());
    }

    #[test]
    fn lines_skip_blank_and_report_bad() {
        let l = parse_lines("a:1\n\n  \nnope\nb:2 weight=4\r\n");
        assert_eq!(l.specs, list(&["a:1", "b:2 weight=4"]));
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].starts_with("line 4:"), "{:?}", l.warnings);
    }
}

//! The resolver cache's decisions (pure: time is passed in, no I/O).
//!
//! Per host name it keeps the last good answer and decides, for each use:
//! - **fresh** (younger than [`FRESH`]): use it;
//! - **stale** (older, but younger than [`FRESH`] + [`SERVE_STALE`]): use
//!   it and start one background refresh (unless one is running or the
//!   last lookup failed less than [`RETRY`] ago);
//! - **no usable answer**: the caller must wait for a lookup; the first such
//!   caller starts it ([`Decision::Lookup`]), the others wait for that same
//!   one ([`Decision::Wait`]);
//! - **failed** with no usable answer, less than [`RETRY`] ago: fail at once
//!   with that lookup's error ([`Decision::Fail`]), so a resolver outage
//!   costs one lookup per name per [`RETRY`], not one per connection.
//!
//! A failed lookup keeps the last good answer until it is [`FRESH`] +
//! [`SERVE_STALE`] old. What to log is returned by [`Cache::done`]: at most
//! one warning per name per [`WARN_EVERY`], and one line when the name
//! resolves again. Entries unused for [`EVICT_AFTER`] are dropped, and the
//! cache holds at most [`MAX_ENTRIES`] names (the least recently used one
//! without a lookup in flight makes room).
//!
//! Keyed by the host name alone (the port plays no part in resolving a
//! name), so a name never gets the answer of another name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an answer is used without asking again.
pub const FRESH: Duration = Duration::from_secs(5);
/// How long past [`FRESH`] the last good answer is still used while
/// lookups fail (nginx's `resolver valid=` plus a stale window, as
/// Envoy's DNS cache `dns_failure_refresh_rate`/HAProxy's `hold valid`).
pub const SERVE_STALE: Duration = Duration::from_secs(300);
/// After a failed lookup, the next one for that name waits this long.
pub const RETRY: Duration = Duration::from_secs(1);
/// At most one warning per name per this.
pub const WARN_EVERY: Duration = Duration::from_secs(60);
/// A name nobody asked for this long is dropped.
pub const EVICT_AFTER: Duration = Duration::from_secs(600);
/// Most names kept (they come from configs and discovered lists).
pub const MAX_ENTRIES: usize = 1024;
/// Expired entries are swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The addresses of a name, shared by every caller.
pub type Addrs = Arc<[IpAddr]>;

/// What a caller does with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Use these addresses.
    Use(Addrs),
    /// Use these (stale) addresses and start one background lookup.
    UseAndRefresh(Addrs),
    /// No usable answer: start the lookup and wait for it.
    Lookup,
    /// No usable answer: wait for the lookup in flight.
    Wait,
    /// The last lookup failed and there is no usable answer.
    Fail(String),
}

/// A line for the log after a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Warn(String),
    Info(String),
    Debug(String),
}

#[derive(Debug)]
struct Entry {
    /// The last good answer and when it came.
    answer: Option<(Addrs, Instant)>,
    /// The last failure (error, when) since that answer.
    failure: Option<(String, Instant)>,
    in_flight: bool,
    last_used: Instant,
    warned_at: Option<Instant>,
    /// A warning was written since the last good answer.
    episode_warned: bool,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            answer: None,
            failure: None,
            in_flight: false,
            last_used: now,
            warned_at: None,
            episode_warned: false,
        }
    }

    /// The answer while it may be used at all.
    fn usable(&self, now: Instant) -> Option<(&Addrs, Duration)> {
        let (addrs, at) = self.answer.as_ref()?;
        let age = now.saturating_duration_since(*at);
        (age < FRESH + SERVE_STALE).then_some((addrs, age))
    }

    /// A lookup failed less than [`RETRY`] ago.
    fn backing_off(&self, now: Instant) -> bool {
        self.failure
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < RETRY)
    }
}

/// The cache: see the module documentation.
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<String, Entry>,
    max_entries: usize,
    swept_at: Option<Instant>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl Cache {
    pub fn with_capacity(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
            swept_at: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to do with `host` now. `Lookup` and `UseAndRefresh` mark a
    /// lookup in flight: the caller must report it with [`Self::done`].
    pub fn get(&mut self, host: &str, now: Instant) -> Decision {
        self.sweep(now);
        if !self.entries.contains_key(host) {
            self.make_room(now);
            self.entries.insert(host.to_string(), Entry::new(now));
        }
        let Some(e) = self.entries.get_mut(host) else {
            return Decision::Lookup;
        };
        e.last_used = now;
        if let Some((addrs, age)) = e.usable(now) {
            let addrs = Arc::clone(addrs);
            if age < FRESH || e.in_flight || e.backing_off(now) {
                return Decision::Use(addrs);
            }
            e.in_flight = true;
            return Decision::UseAndRefresh(addrs);
        }
        if e.in_flight {
            return Decision::Wait;
        }
        if let Some((err, _)) = e.failure.as_ref().filter(|_| e.backing_off(now)) {
            return Decision::Fail(err.clone());
        }
        e.in_flight = true;
        Decision::Lookup
    }

    /// Record the result of the lookup that [`Self::get`] started. An empty
    /// answer counts as a failure.
    pub fn done(
        &mut self,
        host: &str,
        result: Result<Vec<IpAddr>, String>,
        now: Instant,
    ) -> Option<Note> {
        let e = self.entries.get_mut(host)?;
        e.in_flight = false;
        let result = result.and_then(|a| match a.is_empty() {
            true => Err("no address".to_string()),
            false => Ok(a),
        });
        match result {
            Ok(addrs) => {
                e.failure = None;
                let recovered = std::mem::take(&mut e.episode_warned);
                let changed = e.answer.as_ref().is_some_and(|(old, _)| **old != *addrs);
                e.answer = Some((addrs.into(), now));
                if recovered {
                    Some(Note::Info(format!("resolve {host}: resolves again")))
                } else {
                    changed.then(|| Note::Debug(format!("resolve {host}: new addresses")))
                }
            }
            Err(err) => failed(host, e, err, now),
        }
    }

    /// The lookup that [`Self::get`] started was dropped before it ended
    /// (its runtime shut down): nothing learnt, the next use starts another.
    pub fn abandon(&mut self, host: &str) {
        if let Some(e) = self.entries.get_mut(host) {
            e.in_flight = false;
        }
    }

    /// Drop entries unused for [`EVICT_AFTER`] (at most every
    /// [`SWEEP_EVERY`]).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept_at
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept_at = Some(now);
        self.entries
            .retain(|_, e| e.in_flight || now.saturating_duration_since(e.last_used) < EVICT_AFTER);
    }

    /// Before inserting: when full, drop the least recently used entry
    /// without a lookup in flight (if every entry has one, the cache grows
    /// past its bound until they end: each holds a blocking thread, which
    /// tokio bounds).
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.max_entries {
            return;
        }
        self.swept_at = None;
        self.sweep(now);
        if self.entries.len() < self.max_entries {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| !e.in_flight)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }
}

/// Record a failed lookup; a warning when the name's last one is older
/// than [`WARN_EVERY`].
fn failed(host: &str, e: &mut Entry, err: String, now: Instant) -> Option<Note> {
    let text = match e.usable(now) {
        Some((_, age)) => {
            let left = (FRESH + SERVE_STALE).saturating_sub(age).as_secs();
            format!(
                "resolve {host}: {err}; using the last answer ({} s old) for up to {left} s more",
                age.as_secs()
            )
        }
        None => format!("resolve {host}: {err}; no usable answer, connections to it fail"),
    };
    e.failure = Some((err, now));
    let quiet = e
        .warned_at
        .is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY);
    if quiet {
        return Some(Note::Debug(text));
    }
    e.warned_at = Some(now);
    e.episode_warned = true;
    Some(Note::Warn(text))
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;

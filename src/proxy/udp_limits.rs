//! The pure decisions of UDP sessions ([`super::udp`]): when a session
//! ends ([`Limits::end`]) and how many may be open ([`session_cap`], with
//! the descriptor limit read through [`NofileCache`]). Times are passed in.

use std::time::Duration;

use super::pump::COARSE_SLACK_MS;
use crate::config::{Server, Udp};

/// How long a detached session waits for replies when nothing else bounds it.
pub const DETACHED_WAIT: Duration = Duration::from_secs(10);
/// Descriptors kept out of the session budget (listeners, TCP, checks, logs).
const FD_RESERVE: u64 = 64;

/// The session cap: `max_sessions`, lowered to fit RLIMIT_NOFILE.
pub fn session_cap(max_sessions: u32, nofile: Option<u64>) -> u32 {
    match nofile {
        Some(n) => {
            let budget = n.saturating_sub(FD_RESERVE).max(1);
            u64::from(max_sessions).min(budget) as u32
        }
        None => max_sessions,
    }
}

/// How often the listener re-reads RLIMIT_NOFILE (a `prlimit` on the
/// running daemon takes effect within this long).
const NOFILE_EVERY_MS: u64 = 1_000;

/// RLIMIT_NOFILE, read at most once per [`NOFILE_EVERY_MS`] rather than
/// with a `prlimit64` syscall for every new session (pure: time passed in).
#[derive(Debug, Default)]
pub struct NofileCache {
    value: Option<u64>,
    read_at: Option<u64>,
}

impl NofileCache {
    pub fn get(&mut self, now: u64, read: impl FnOnce() -> Option<u64>) -> Option<u64> {
        if self
            .read_at
            .is_none_or(|t| now.saturating_sub(t) >= NOFILE_EVERY_MS)
        {
            self.value = read();
            self.read_at = Some(now);
        }
        self.value
    }
}

/// When a session ends (pure; times in ms since an arbitrary origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub client_idle: Option<u64>,
    pub backend_idle: Option<u64>,
    pub max_responses: u64,
}

/// What a session has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub last_client: u64,
    /// Last reply, or the session start.
    pub last_backend: u64,
    pub requests: u64,
    pub responses: u64,
    pub detached: bool,
}

/// The verdict at time `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    End(&'static str),
    /// Look again at this time (`u64::MAX`: only an event can end it).
    WaitUntil(u64),
}

impl Limits {
    pub fn of(cfg: &Server, udp: &Udp) -> Self {
        Self {
            client_idle: idle_limit_ms(cfg.client_idle_timeout),
            backend_idle: idle_limit_ms(cfg.backend_idle_timeout),
            max_responses: udp.max_responses,
        }
    }

    /// Once `max_responses` replies came, the session is *full*: it takes
    /// no new request ([`Self::full`]) and ends when it owes no reply (as
    /// many replies as requests), else after a bounded wait for them.
    pub fn end(&self, s: &Seen, now: u64) -> Verdict {
        let full = self.full(s);
        if full && s.responses >= s.requests {
            return Verdict::End("max_responses");
        }
        let mut next = u64::MAX;
        let mut check = |limit: Option<u64>, since: u64| {
            let at = since.saturating_add(limit?);
            if now >= at {
                return Some(());
            }
            next = next.min(at);
            None
        };
        if check(self.client_idle, s.last_client).is_some() {
            return Verdict::End("client_idle_timeout");
        }
        if check(self.backend_idle, s.last_backend).is_some() {
            return Verdict::End("backend_idle_timeout");
        }
        if (s.detached || full) && self.backend_idle.is_none() {
            let wait = self.client_idle.unwrap_or(DETACHED_WAIT.as_millis() as u64);
            if check(Some(wait), s.last_backend.max(s.last_client)).is_some() {
                return Verdict::End(if full {
                    "max_responses"
                } else {
                    "max_requests"
                });
            }
        }
        Verdict::WaitUntil(next)
    }

    /// `max_responses` replies came: the session takes no new request.
    pub fn full(&self, s: &Seen) -> bool {
        self.max_responses > 0 && s.responses >= self.max_responses
    }
}

/// An idle timeout in milliseconds, with one coarse-clock tick of slack:
/// activity stamps come from [`now_ms`], so without it a session could end
/// up to a tick early (the same rule as TCP's [`super::pump::idle_ms_left`]).
pub(super) fn idle_limit_ms(limit: Option<Duration>) -> Option<u64> {
    limit.map(|d| {
        u64::try_from(d.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(COARSE_SLACK_MS)
    })
}

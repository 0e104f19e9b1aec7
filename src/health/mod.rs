//! Active health checks: one state machine, every check kind.
//!
//! - [`machine`]: the pure state machine (thresholds, score window, timing).
//! - [`report`]: what the API and metrics read per backend (state, history).
//! - [`run`]: one check of one target, dispatched by kind; each kind lives
//!   in its own module ([`ping`], [`probe`], [`exec`], [`script`], [`http`],
//!   [`icmp`], [`webhook`]) and returns an [`Outcome`], never an error.
//! - [`runner`]: the I/O loop per backend (schedule, check, record, flip
//!   `BackendState::live`), and the supervisor that starts and stops those
//!   loops when a server's plan changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::{Check, Healthcheck};

pub mod exec;
#[cfg(test)]
mod fuzz_tests;
pub mod http;
pub mod icmp;
pub mod machine;
mod outcome;
pub mod ping;
pub mod probe;
pub mod process;
pub mod report;
pub mod runner;
pub mod script;
pub mod url;
pub mod webhook;

pub use outcome::{Cause, OUTPUT_CAP, Outcome, Verdict, capture};

/// Concurrent `exec`/`script` checks allowed by default, process-wide.
pub const DEFAULT_EXEC_LIMIT: usize = 4;

/// What checks share across the process.
#[derive(Debug, Clone)]
pub struct Context {
    /// Permits for `exec` and `script` checks (no fork storms on small boxes).
    pub exec_slots: Arc<Semaphore>,
}

impl Default for Context {
    fn default() -> Self {
        Self::new(DEFAULT_EXEC_LIMIT)
    }
}

impl Context {
    pub fn new(exec_limit: usize) -> Self {
        Self {
            exec_slots: Arc::new(Semaphore::new(exec_limit.max(1))),
        }
    }
}

/// What a check looks at: the backend's host (name or IP literal, without
/// brackets) and the port to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn new(host: &str, port: u16) -> Self {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Self {
            host: host.to_string(),
            port,
        }
    }

    /// The address to dial: the IP literal, or the first address the name
    /// resolves to (through the process-wide cache, [`crate::resolve`]).
    pub async fn resolve(&self) -> Result<SocketAddr, Outcome> {
        // The error names the host ("resolve HOST: ...").
        crate::resolve::first_addr(&self.host, self.port)
            .await
            .map_err(|e| Outcome::fail(Cause::Network, e.to_string()))
    }
}

/// What bounds one check of `hc`: its `timeout`, else its `interval` (as
/// HAProxy's `timeout check` falls back to `inter`), so that a check that
/// never ends (a backend that accepts and stays silent, a hung script)
/// cannot freeze the backend's state or hold an exec slot for good.
pub fn check_timeout(hc: &Healthcheck) -> Option<Duration> {
    hc.timeout.or(hc.interval)
}

/// Run one check of `target`, bounded by `timeout` (`None` = no bound).
/// `exec` and `script` checks first wait for a slot in `ctx`; that wait does
/// not count against the timeout.
pub async fn run(
    check: &Check,
    target: &Target,
    timeout: Option<Duration>,
    ctx: &Context,
) -> Outcome {
    let _permit = match check {
        Check::Exec { .. } | Check::Script(_) => match ctx.exec_slots.acquire().await {
            Ok(p) => Some(p),
            Err(_) => return Outcome::fail(Cause::Unavailable, "exec slots closed"),
        },
        _ => None,
    };
    let check = dispatch(check, target, timeout);
    match timeout {
        Some(t) => tokio::time::timeout(t, check).await.unwrap_or_else(|_| {
            Outcome::fail(
                Cause::Timeout,
                format!("no result within {}", fmt_duration(t)),
            )
        }),
        None => check.await,
    }
}

async fn dispatch(check: &Check, target: &Target, timeout: Option<Duration>) -> Outcome {
    match check {
        Check::None => Outcome::pass("no check"),
        Check::Ping => ping::check(target).await,
        Check::Probe(p) => probe::check(p, target).await,
        Check::Exec {
            command,
            positive_output,
            negative_output,
        } => {
            exec::check(
                command,
                positive_output.as_deref(),
                negative_output.as_deref(),
                target,
                timeout,
            )
            .await
        }
        Check::Script(s) => script::check(s, target, timeout).await,
        Check::Http(h) => http::check(h, target).await,
        Check::Icmp { count } => icmp::check(*count, target, timeout).await,
        Check::Webhook { url, method } => webhook::check(url, *method, target).await,
    }
}

/// `1.5s`, `200ms`: for messages.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_bounded_by_its_timeout_else_its_interval() {
        let mut hc = Healthcheck::none();
        assert_eq!(check_timeout(&hc), None);
        hc.interval = Some(Duration::from_secs(5));
        assert_eq!(check_timeout(&hc), Some(Duration::from_secs(5)));
        hc.timeout = Some(Duration::from_secs(1));
        assert_eq!(check_timeout(&hc), Some(Duration::from_secs(1)));
    }
}

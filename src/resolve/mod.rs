//! Host names of backends resolved through one process-wide cache.
//!
//! The decisions (fresh, stale, refresh, wait, fail, eviction, what to log)
//! are the pure [`cache`]; this module drives it: a lookup runs in a task of
//! its own (`getaddrinfo` on tokio's blocking pool through
//! `tokio::net::lookup_host`), so a caller that gives up (its connect
//! timeout) never strands the callers waiting for the same lookup
//! (singleflight: one lookup per name at a time; the others wait for it).
//!
//! IP literals (`127.0.0.1`, `::1`, `[::1]`) are used as they are: no
//! lookup, no cache entry ([`ip_literal`]).
//!
//! Used by the TCP dial (plain and TLS backends), the health checks, the
//! HTTP client's URLs (discovery endpoints, webhooks: [`crate::http::fetch`])
//! and srv discovery's `srv_lookup_server`; UDP backends must be IP
//! literals (names are dropped from udp lists).

pub mod cache;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

pub use cache::Addrs;
use cache::{Cache, Decision, Note};

use crate::{debug, info, warn};

/// How a name is looked up: the name in, its addresses or an error out.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

/// Log component of the resolver's lines.
const COMPONENT: &str = "resolve";

/// The resolver: a [`Cache`] and the lookups in flight.
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    lookup: Lookup,
}

#[derive(Default)]
struct State {
    cache: Cache,
    /// Waiters of each lookup in flight.
    flights: HashMap<String, Arc<Notify>>,
}

/// The process-wide resolver (real lookups).
pub fn global() -> &'static Resolver {
    static GLOBAL: OnceLock<Resolver> = OnceLock::new();
    GLOBAL.get_or_init(|| Resolver::new(system_lookup()))
}

/// `getaddrinfo` on the blocking pool, as `tokio::net::lookup_host`.
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !ips.contains(&a.ip()) {
                    ips.push(a.ip());
                }
            }
            Ok(ips)
        })
    })
}

/// `host`'s addresses with `port`, through the process-wide resolver.
pub async fn socket_addrs(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let ips = global().resolve(host).await?;
    Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

/// The first of `host`'s addresses with `port`, through the process-wide
/// resolver (for clients that dial one address: HTTP URLs, DNS servers).
/// A failure names the host (`resolve HOST: ...`).
pub async fn first_addr(host: &str, port: u16) -> io::Result<SocketAddr> {
    let ips = global().resolve(host).await?;
    match ips.first() {
        Some(ip) => Ok(SocketAddr::new(*ip, port)),
        // `resolve` never answers an empty list; kept an error, not a panic.
        None => Err(failure(host, "no address")),
    }
}

/// `host` as an IP address if it is a literal (IPv6 with or without
/// brackets): such hosts are not looked up.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => host,
    };
    bare.parse().ok()
}

impl Resolver {
    pub fn new(lookup: Lookup) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                lookup,
            }),
        }
    }

    /// The addresses of `host` (non-empty): an IP literal as it is, a name
    /// from the cache or a lookup.
    pub async fn resolve(&self, host: &str) -> io::Result<Addrs> {
        if let Some(ip) = ip_literal(host) {
            return Ok(Arc::from([ip]));
        }
        // A waiter is woken when its lookup ended, which left an answer or
        // a failure: the second round decides. More rounds only if the
        // entry was evicted meanwhile.
        for _ in 0..4 {
            let notify: Arc<Notify>;
            let notified;
            {
                let mut st = self.inner.lock();
                notify = match st.cache.get(host, now()) {
                    Decision::Use(addrs) => return Ok(addrs),
                    Decision::UseAndRefresh(addrs) => {
                        self.start(&mut st, host);
                        return Ok(addrs);
                    }
                    Decision::Fail(e) => return Err(failure(host, &e)),
                    Decision::Lookup => self.start(&mut st, host),
                    Decision::Wait => match st.flights.get(host) {
                        Some(n) => Arc::clone(n),
                        None => self.start(&mut st, host),
                    },
                };
                // Made under the lock, so the `notify_waiters` of a lookup
                // that ends before this task waits is not missed.
                notified = notify.notified();
            }
            notified.await;
        }
        Err(failure(host, "lookup did not settle"))
    }

    /// Start the lookup of `host` in a task of its own; its waiters' signal.
    fn start(&self, st: &mut State, host: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        st.flights.insert(host.to_string(), Arc::clone(&notify));
        let mut flight = Flight {
            inner: Arc::clone(&self.inner),
            host: host.to_string(),
            ended: false,
        };
        tokio::spawn(async move {
            let host = flight.host.clone();
            let result = (flight.inner.lookup)(host.clone())
                .await
                .map_err(|e| e.to_string());
            match &result {
                Ok(ips) => debug!(COMPONENT, "looked up {host}: {ips:?}"),
                Err(e) => debug!(COMPONENT, "looked up {host}: {e}"),
            }
            let note = flight.end(|cache, now| cache.done(&host, result, now));
            match note {
                Some(Note::Warn(w)) => warn!(COMPONENT, "{w}"),
                Some(Note::Info(i)) => info!(COMPONENT, "{i}"),
                Some(Note::Debug(d)) => debug!(COMPONENT, "{d}"),
                None => {}
            }
        });
        notify
    }
}

/// One lookup in flight. Ending it records the result and wakes its
/// waiters; dropped unended (the task was cancelled with its runtime), it
/// still wakes them, and the next use starts another lookup.
struct Flight {
    inner: Arc<Inner>,
    host: String,
    ended: bool,
}

impl Flight {
    fn end<T>(&mut self, record: impl FnOnce(&mut Cache, Instant) -> T) -> T {
        self.ended = true;
        let mut st = self.inner.lock();
        let out = record(&mut st.cache, now());
        if let Some(n) = st.flights.remove(&self.host) {
            n.notify_waiters();
        }
        out
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if !self.ended {
            let host = self.host.clone();
            self.end(|cache, _| cache.abandon(&host));
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn failure(host: &str, e: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("resolve {host}: {e}"))
}

#[cfg(test)]
mod tests;

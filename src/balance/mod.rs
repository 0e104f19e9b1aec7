//! Backend election: pure code, no I/O, no clock.
//!
//! The proxy hands [`Balancer::elect`] the electable backends of one server
//! (healthy, enabled, discovered) as [`Candidate`]s plus the client address
//! and a random number; it returns the index of the chosen candidate in the
//! slice it passed.
//!
//! # Pipeline
//!
//! Every election runs the same three steps, for every strategy:
//!
//! 1. candidates at their limit (`max_connections > 0 && active >=
//!    max_connections`) are dropped;
//! 2. of what is left only the group with the numerically lowest `priority`
//!    is kept: higher numbers are standby and are never chosen while a
//!    lower-numbered candidate is electable (gobetween applies priority to
//!    `weight` only; we apply it to all strategies);
//! 3. the strategy picks one member of that group.
//!
//! The group is never materialised: each step is a scan over the original
//! slice that skips non-members, so an election does not allocate and is
//! O(n) in the number of candidates (see [`roundrobin`] for the one case that
//! is not, and why it rarely matters).
//!
//! # Strategies and what "equals" means for the score tie-break
//!
//! Backends with a higher `score` are preferred *among equals*; what counts
//! as equal depends on the strategy:
//!
//! | strategy | choice | equals (score decides, then …) |
//! |---|---|---|
//! | `weight` | weighted random over the group's weight sum (RFC 2782) | only when the sum is 0: every member is equal, so the pick is uniform among the highest-scored members |
//! | `roundrobin` | next in key order | none: keys are unique (duplicate keys are ordered by slice position); score unused |
//! | `iphash` | FNV-1a 32 of the client IP mod n, over key order | none: score unused, so a client's backend does not depend on health noise |
//! | `iphash1` | rendezvous: highest hash of (client IP ‖ key) | members with the same hash (rare): higher score, then smaller key |
//! | `leastconn` | fewest `active` | same `active`: higher score, then uniform random |
//! | `leastbandwidth` | lowest `bandwidth` | same `bandwidth`: higher score, then uniform random |
//!
//! Client addresses are hashed as their raw bytes: 4 for IPv4, 16 for IPv6,
//! with IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as seen on a dual-stack listener)
//! normalised to the 4-byte form, so a client hashes the same on either kind
//! of listener.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

mod iphash;
mod least;
mod roundrobin;
mod weight;

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

impl Candidate<'_> {
    /// At its `max_connections` limit (0 = unlimited).
    #[inline]
    fn at_limit(&self) -> bool {
        self.max_connections > 0 && self.active >= u64::from(self.max_connections)
    }
}

/// One server's balancer: the strategy and its small mutable state.
#[derive(Debug)]
pub struct Balancer {
    kind: BalanceKind,
    /// Round-robin position; only `roundrobin` uses it.
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
    ///
    /// `random` is a full-range random number (e.g. from [`random_u64`]);
    /// strategies that need no randomness ignore it. Returns an index into
    /// `candidates`.
    pub fn elect(
        &self,
        candidates: &[Candidate<'_>],
        client: IpAddr,
        random: u64,
    ) -> Option<usize> {
        let group = Group::of(candidates)?;
        if group.len == 1 {
            return group.members().next().map(|(i, _)| i);
        }
        match self.kind {
            BalanceKind::Weight => weight::elect(&group, random),
            BalanceKind::RoundRobin => roundrobin::elect(&group, &self.next),
            BalanceKind::IpHash => iphash::elect(&group, client),
            BalanceKind::IpHash1 => iphash::elect_rendezvous(&group, client),
            BalanceKind::LeastConn => least::elect(&group, random, |c| c.active),
            BalanceKind::LeastBandwidth => least::elect(&group, random, |c| c.bandwidth),
        }
    }
}

/// The electable, lowest-priority candidates of one election, as a filter
/// over the original slice (no copy).
struct Group<'s, 'k> {
    all: &'s [Candidate<'k>],
    priority: u32,
    /// Number of members; always >= 1.
    len: usize,
}

impl<'s, 'k> Group<'s, 'k> {
    /// `None` when every candidate is at its limit (or there are none).
    fn of(all: &'s [Candidate<'k>]) -> Option<Self> {
        let mut priority = u32::MAX;
        let mut len = 0usize;
        for c in all.iter().filter(|c| !c.at_limit()) {
            match c.priority.cmp(&priority) {
                Ordering::Less => {
                    priority = c.priority;
                    len = 1;
                }
                Ordering::Equal => len += 1,
                Ordering::Greater => {}
            }
        }
        (len > 0).then_some(Self { all, priority, len })
    }

    #[inline]
    fn is_member(&self, c: &Candidate<'_>) -> bool {
        c.priority == self.priority && !c.at_limit()
    }

    /// Members with their index into the original slice, in slice order.
    #[inline]
    fn members(&self) -> impl Iterator<Item = (usize, &'s Candidate<'k>)> + '_ {
        self.all
            .iter()
            .enumerate()
            .filter(|(_, c)| self.is_member(c))
    }

    /// Index of the `k`-th member (0-based, `k < len`) in the order of
    /// (key, slice index). See [`roundrobin`] for the cost.
    fn nth_by_key(&self, k: usize) -> Option<usize> {
        roundrobin::nth_by_key(self, k)
    }
}

/// Unbiased-enough map of a full-range random number onto `0..n`
/// (multiply-shift; bias at most n / 2^64). `n` must be > 0 for a useful
/// result; 0 gives 0.
#[inline]
fn scale(random: u64, n: u64) -> u64 {
    ((u128::from(random) * u128::from(n)) >> 64) as u64
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// FNV-1a 32, continued from `state` (start with [`FNV32_OFFSET`]).
#[inline]
fn fnv1a32(mut state: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        state ^= u32::from(b);
        state = state.wrapping_mul(FNV32_PRIME);
    }
    state
}

/// Raw client address bytes for hashing: 4 for IPv4 and IPv4-mapped IPv6,
/// else 16. Returns the buffer and how many bytes of it are used.
#[inline]
fn ip_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut buf = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            (buf, 4)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                (buf, 4)
            }
            None => (v6.octets(), 16),
        },
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

/// Shared test helpers for the strategy modules.
#[cfg(test)]
pub(crate) mod testutil {
    use super::Candidate;

    /// A candidate with neutral defaults: priority 0, weight 1, idle,
    /// unlimited, score 100.
    pub fn cand(key: &str) -> Candidate<'_> {
        Candidate {
            key,
            priority: 0,
            weight: 1,
            active: 0,
            max_connections: 0,
            bandwidth: 0,
            score: 100,
        }
    }

    pub fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:80", i + 1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{cand, keys};
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ALL: [BalanceKind; 6] = [
        BalanceKind::Weight,
        BalanceKind::RoundRobin,
        BalanceKind::IpHash,
        BalanceKind::IpHash1,
        BalanceKind::LeastConn,
        BalanceKind::LeastBandwidth,
    ];

    fn client(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 ^ i.wrapping_mul(2_654_435_761)))
    }

    #[test]
    fn names_round_trip() {
        for kind in ALL {
            assert_eq!(BalanceKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(BalanceKind::NAMES.len(), ALL.len());
        assert_eq!(BalanceKind::parse("Weight"), None);
    }

    #[test]
    fn empty_input_is_none() {
        for kind in ALL {
            let b = Balancer::new(kind);
            assert_eq!(b.elect(&[], client(1), random_u64()), None, "{kind:?}");
        }
    }

    #[test]
    fn all_at_limit_is_none() {
        let ks = keys(3);
        let cands: Vec<_> = ks
            .iter()
            .enumerate()
            .map(|(i, k)| Candidate {
                max_connections: 5,
                active: 5 + i as u64,
                priority: i as u32,
                ..cand(k)
            })
            .collect();
        for kind in ALL {
            let b = Balancer::new(kind);
            for i in 0..50 {
                assert_eq!(b.elect(&cands, client(i), random_u64()), None, "{kind:?}");
            }
        }
    }

    #[test]
    fn max_connections_excludes_only_full_backends() {
        // 0: at limit, 1: over limit, 2: under limit, 3: unlimited.
        let ks = keys(4);
        let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        cands[0].max_connections = 3;
        cands[0].active = 3;
        cands[1].max_connections = 3;
        cands[1].active = 9;
        cands[2].max_connections = 3;
        cands[2].active = 2;
        cands[3].active = 1_000_000;
        for kind in ALL {
            let b = Balancer::new(kind);
            let mut seen = [0u32; 4];
            for i in 0..400 {
                let got = b.elect(&cands, client(i), random_u64()).unwrap();
                seen[got] += 1;
            }
            assert_eq!(
                seen[0] + seen[1],
                0,
                "{kind:?} elected a full backend: {seen:?}"
            );
            if kind != BalanceKind::LeastConn {
                // leastconn rightly prefers the idle one; every other strategy
                // must use both.
                assert!(seen[2] > 0 && seen[3] > 0, "{kind:?}: {seen:?}");
            } else {
                assert_eq!(seen[2], 400);
            }
        }
    }

    /// Two primaries (priority 1) and two standbys (priority 2, listed first
    /// and made maximally attractive to every strategy).
    fn primaries_and_standbys<'a>(ks: &'a [String]) -> Vec<Candidate<'a>> {
        let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        for c in &mut cands[..2] {
            c.priority = 2;
            c.weight = 1_000_000;
            c.score = 100;
        }
        for c in &mut cands[2..] {
            c.priority = 1;
            c.weight = 1;
            c.active = 1_000;
            c.bandwidth = 1_000_000_000;
            c.max_connections = 1_001;
            c.score = 1;
        }
        cands
    }

    #[test]
    fn standby_never_chosen_while_a_primary_is_electable() {
        let ks = keys(4);
        let cands = primaries_and_standbys(&ks);
        for kind in ALL {
            let b = Balancer::new(kind);
            for i in 0..2_000 {
                let ip = if i % 2 == 0 {
                    client(i)
                } else {
                    IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64 | 0x2001_0db8))
                };
                let got = b.elect(&cands, ip, random_u64()).unwrap();
                assert!(got >= 2, "{kind:?} chose standby {got}");
            }
        }
    }

    #[test]
    fn standby_chosen_once_all_primaries_are_full() {
        let ks = keys(4);
        let mut cands = primaries_and_standbys(&ks);
        // One primary full: the other primary takes everything.
        cands[2].active = 1_001;
        for kind in ALL {
            let b = Balancer::new(kind);
            for i in 0..200 {
                assert_eq!(
                    b.elect(&cands, client(i), random_u64()),
                    Some(3),
                    "{kind:?}"
                );
            }
        }
        // Both full: the standbys take over, and both are used where the
        // strategy spreads load.
        cands[3].active = 5_000;
        for kind in ALL {
            let b = Balancer::new(kind);
            let mut seen = [0u32; 4];
            for i in 0..400 {
                seen[b.elect(&cands, client(i), random_u64()).unwrap()] += 1;
            }
            assert_eq!(seen[2] + seen[3], 0, "{kind:?}: {seen:?}");
            assert!(seen[0] > 0 && seen[1] > 0, "{kind:?}: {seen:?}");
        }
    }

    #[test]
    fn single_member_group_is_returned_for_every_strategy() {
        let ks = keys(3);
        let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        cands[0].priority = 5;
        cands[1].priority = 3;
        cands[2].priority = 4;
        for kind in ALL {
            let b = Balancer::new(kind);
            assert_eq!(
                b.elect(&cands, client(7), random_u64()),
                Some(1),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let ks = keys(5);
        let cands: Vec<_> = ks
            .iter()
            .map(|k| Candidate {
                key: k,
                priority: u32::MAX,
                weight: u32::MAX,
                active: u64::MAX - 1,
                max_connections: 0,
                bandwidth: u64::MAX,
                score: u32::MAX,
            })
            .collect();
        for kind in ALL {
            let b = Balancer::new(kind);
            for r in [0, 1, u64::MAX, u64::MAX / 2, random_u64()] {
                let got = b.elect(&cands, client(3), r);
                assert!(matches!(got, Some(i) if i < 5), "{kind:?} {got:?}");
                let v6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                assert!(b.elect(&cands, v6, r).is_some());
            }
        }
    }

    #[test]
    fn scale_stays_in_range() {
        for n in [1u64, 2, 3, 7, 1000, u64::MAX] {
            for r in [0, 1, u64::MAX, 1 << 63] {
                assert!(scale(r, n) < n);
            }
        }
        assert_eq!(scale(u64::MAX, 0), 0);
    }

    #[test]
    fn fnv1a32_known_vectors() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(fnv1a32(FNV32_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(FNV32_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(FNV32_OFFSET, b"foobar"), 0xbf9c_f968);
        // Continuing equals hashing the concatenation.
        assert_eq!(fnv1a32(fnv1a32(FNV32_OFFSET, b"foo"), b"bar"), 0xbf9c_f968);
    }

    #[test]
    fn mapped_ipv6_hashes_as_ipv4() {
        let v4: Ipv4Addr = "192.0.2.7".parse().unwrap();
        let (b4, n4) = ip_bytes(IpAddr::V4(v4));
        let (bm, nm) = ip_bytes(IpAddr::V6(v4.to_ipv6_mapped()));
        assert_eq!((&b4[..n4], n4), (&bm[..nm], 4));
        let (_, n6) = ip_bytes("2001:db8::1".parse().unwrap());
        assert_eq!(n6, 16);
    }
}

//! The optional sockmap fast path (feature "ebpf", per server
//! `sockmap = true`; see ebpf/README.md): the kernel moves the bytes of a
//! connected pair from one socket to the other with an `sk_skb` verdict
//! program, and userspace only waits for EOF, errors, kills and timeouts
//! ([`super::gated`]).
//!
//! The BPF object is loaded once per process, when the first server that
//! asks for it starts ([`prepare`]). When that fails (no object compiled
//! in, missing CAP_BPF/CAP_NET_ADMIN, verifier), one line says why and every
//! connection is relayed by [`super::pump`] as usual.
//!
//! This file also holds the pure decisions of the gated relay: when a
//! destination has taken every byte owed to it ([`flushed`]) and the
//! bookkeeping of the BPF pair counters ([`Tally`]).

use std::time::Duration;

use crate::{info, warn};

/// Cookies (`SO_COOKIE`) of a gated pair: client, backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairCookies(pub [u64; 2]);

/// While a half-close or a userspace write waits for the destination to
/// take the bytes the kernel redirected to it, look this often (there is no
/// event for "psock backlog sent").
pub const FLUSH_POLL: Duration = Duration::from_millis(1);
/// Otherwise read the pair counters this often: for the byte statistics
/// and for idle timeouts, which are judged from them.
pub const COUNTER_POLL: Duration = Duration::from_secs(1);

/// Whether a destination socket has taken every byte owed to it: `queued`
/// is its `tcpi_bytes_acked + SIOCOUTQ` now (every byte ever written into
/// it), `base` the same at gating time, `owed` the bytes redirected to it
/// by the kernel plus those userspace wrote to it since gating.
pub fn flushed(queued: u64, base: u64, owed: u64) -> bool {
    queued.wrapping_sub(base) >= owed
}

/// Whether the verdict has run over every byte a source socket received
/// (or userspace read it): `received` is its `tcpi_bytes_received`, which
/// counts the FIN too once `eof` was read; `moved` the bytes the kernel
/// redirected from it, `read` those userspace read from it since gating
/// (before gating nothing is read from either socket).
pub fn drained(received: u64, eof: bool, moved: u64, read: u64) -> bool {
    received.saturating_sub(u64::from(eof)) <= moved.saturating_add(read)
}

/// The longest pause between two looks while waiting for a flush.
pub const FLUSH_POLL_MAX: Duration = Duration::from_millis(64);

/// How long to sleep before the next look at the counters: while a
/// direction waits for a flush, [`FLUSH_POLL`] doubled for each look that
/// found it still waiting (`looks`), up to [`FLUSH_POLL_MAX`] (a stalled
/// destination may take long to drain); otherwise [`COUNTER_POLL`].
pub fn next_poll(waiting_for_flush: bool, looks: u32) -> Duration {
    if waiting_for_flush {
        FLUSH_POLL
            .saturating_mul(1 << looks.min(6))
            .min(FLUSH_POLL_MAX)
    } else {
        COUNTER_POLL
    }
}

/// The pair's byte counters as last accounted: each read of the BPF
/// counters yields what to add to the statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Bytes redirected client -> backend, backend -> client.
    pub seen: [u64; 2],
}

impl Tally {
    /// New bytes since the last call (counters only grow; a smaller value,
    /// e.g. a failed read reported as 0, adds nothing and is not kept).
    pub fn advance(&mut self, now: [u64; 2]) -> [u64; 2] {
        let mut delta = [0; 2];
        for i in 0..2 {
            if now[i] > self.seen[i] {
                delta[i] = now[i] - self.seen[i];
                self.seen[i] = now[i];
            }
        }
        delta
    }
}

/// An error and its sources, joined: aya's `Display` leaves out the errno
/// ("failed to create map" without "Operation not permitted").
pub fn error_chain(context: &str, e: &dyn std::error::Error) -> String {
    let mut out = format!("{context}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(all(feature = "ebpf", betwixt_ebpf_obj))]
static LOADED: std::sync::OnceLock<Option<super::sockmap_bpf::Loaded>> = std::sync::OnceLock::new();

/// The loaded fast path, if [`prepare`] loaded it.
#[cfg(all(feature = "ebpf", betwixt_ebpf_obj))]
pub(super) fn loaded() -> Option<&'static super::sockmap_bpf::Loaded> {
    LOADED.get().and_then(Option::as_ref)
}

/// Load the fast path for `server` (once per process; later calls reuse
/// the outcome). The first failure is logged once; its connections then use
/// splice. Returns whether the fast path is on.
pub fn prepare(server: &str) -> bool {
    #[cfg(all(feature = "ebpf", betwixt_ebpf_obj))]
    let on = LOADED
        .get_or_init(|| {
            super::sockmap_bpf::Loaded::load()
                .map_err(|why| unavailable(&why))
                .ok()
        })
        .is_some();
    #[cfg(not(all(feature = "ebpf", betwixt_ebpf_obj)))]
    let on = {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| unavailable(not_built()));
        false
    };
    if on {
        info!(server, "sockmap fast path on");
    }
    on
}

fn unavailable(why: &str) {
    warn!(
        "sockmap",
        "sockmap fast path unavailable: {why}; using splice"
    );
}

#[cfg(not(all(feature = "ebpf", betwixt_ebpf_obj)))]
fn not_built() -> &'static str {
    if cfg!(feature = "ebpf") {
        "not compiled in (clang was not available at build time)"
    } else {
        "disabled at build time (cargo feature \"ebpf\" off)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushed_when_every_owed_byte_was_queued() {
        // 100 bytes (a PROXY header) were queued before gating.
        assert!(flushed(100, 100, 0));
        assert!(!flushed(100, 100, 1));
        assert!(!flushed(1_099, 100, 1_000));
        assert!(flushed(1_100, 100, 1_000));
        assert!(flushed(5_000, 100, 1_000));
        // The sum wraps like the kernel's counters would.
        assert!(flushed(5, u64::MAX - 4, 10));
        assert!(!flushed(4, u64::MAX - 4, 10));
    }

    #[test]
    fn drained_once_every_received_byte_was_moved_or_read() {
        // 1000 bytes and the FIN (one sequence number) received.
        assert!(!drained(1_001, true, 900, 0));
        assert!(drained(1_001, true, 1_000, 0));
        assert!(drained(1_001, true, 900, 100));
        // Before the FIN every received byte counts.
        assert!(!drained(1_000, false, 999, 0));
        assert!(drained(1_000, false, 1_000, 0));
        // Nothing received at all (a bare FIN).
        assert!(drained(1, true, 0, 0));
        assert!(drained(0, false, 0, 0));
    }

    #[test]
    fn tally_yields_new_bytes_once() {
        let mut t = Tally::default();
        assert_eq!(t.advance([10, 0]), [10, 0]);
        assert_eq!(t.advance([10, 0]), [0, 0]);
        assert_eq!(t.advance([15, 7]), [5, 7]);
        // A failed read (0) neither subtracts nor resets.
        assert_eq!(t.advance([0, 0]), [0, 0]);
        assert_eq!(t.seen, [15, 7]);
        assert_eq!(t.advance([16, 7]), [1, 0]);
    }

    #[test]
    fn polls_fast_only_while_waiting_for_a_flush() {
        assert_eq!(next_poll(true, 0), FLUSH_POLL);
        assert_eq!(next_poll(true, 1), 2 * FLUSH_POLL);
        assert_eq!(next_poll(true, 5), 32 * FLUSH_POLL);
        assert_eq!(next_poll(true, 6), FLUSH_POLL_MAX);
        assert_eq!(next_poll(true, u32::MAX), FLUSH_POLL_MAX);
        assert_eq!(next_poll(false, 0), COUNTER_POLL);
        assert_eq!(next_poll(false, 9), COUNTER_POLL);
    }

    #[test]
    fn error_chain_names_the_errno() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("failed to create map")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from_raw_os_error(libc::EPERM));
        let text = error_chain("socks", &e);
        assert!(text.starts_with("socks: failed to create map: "), "{text}");
        assert!(text.contains("Operation not permitted"), "{text}");
    }
}

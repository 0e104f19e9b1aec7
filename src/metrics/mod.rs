//! Counters and rates per server and per backend.
//!
//! The data path only does relaxed atomic adds; a ticker in the daemon calls
//! [`Counters::tick`] every [`RATE_WINDOW`] to turn byte totals into rates
//! (gobetween's `rx_second`/`tx_second`: bytes per second over the last window).

pub mod prometheus;
pub mod view;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How often rates are recomputed (gobetween: 2 s).
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Connection and byte counters of one server or one backend.
#[derive(Debug, Default)]
pub struct Counters {
    /// Open connections (for backends: counted from election time).
    pub active: AtomicU64,
    /// Connections ever established.
    pub total: AtomicU64,
    /// Backends: failed connects. Servers: clients turned away (limit, access, no backend).
    pub refused: AtomicU64,
    /// Bytes read from backends and written to clients.
    pub rx: AtomicU64,
    /// Bytes read from clients and written to backends.
    pub tx: AtomicU64,
    rx_second: AtomicU64,
    tx_second: AtomicU64,
    rx_mark: AtomicU64,
    tx_mark: AtomicU64,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub active_connections: u64,
    pub total_connections: u64,
    pub refused_connections: u64,
    pub rx_total: u64,
    pub tx_total: u64,
    pub rx_second: u64,
    pub tx_second: u64,
}

impl Counters {
    pub fn add_rx(&self, n: u64) {
        self.rx.fetch_add(n, Relaxed);
    }

    pub fn add_tx(&self, n: u64) {
        self.tx.fetch_add(n, Relaxed);
    }

    /// Both directions' rate, for `leastbandwidth`.
    pub fn bandwidth(&self) -> u64 {
        self.rx_second.load(Relaxed) + self.tx_second.load(Relaxed)
    }

    /// Recompute rates from the totals moved since the last tick.
    pub fn tick(&self, elapsed: Duration) {
        let rx = self.rx.load(Relaxed);
        let tx = self.tx.load(Relaxed);
        let rx_prev = self.rx_mark.swap(rx, Relaxed);
        let tx_prev = self.tx_mark.swap(tx, Relaxed);
        self.rx_second
            .store(per_second(rx - rx_prev.min(rx), elapsed), Relaxed);
        self.tx_second
            .store(per_second(tx - tx_prev.min(tx), elapsed), Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            active_connections: self.active.load(Relaxed),
            total_connections: self.total.load(Relaxed),
            refused_connections: self.refused.load(Relaxed),
            rx_total: self.rx.load(Relaxed),
            tx_total: self.tx.load(Relaxed),
            rx_second: self.rx_second.load(Relaxed),
            tx_second: self.tx_second.load(Relaxed),
        }
    }

    /// Take one active slot unless `limit` (0 = none) is reached. Counting at
    /// reservation time means bursts can never overshoot the limit.
    pub fn try_reserve(&self, limit: u32) -> bool {
        let limit = if limit == 0 {
            u64::MAX
        } else {
            u64::from(limit)
        };
        self.active
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    /// Give back a slot taken by [`Counters::try_reserve`].
    pub fn release(&self) {
        let _ = self
            .active
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

fn per_second(delta: u64, elapsed: Duration) -> u64 {
    let ms = elapsed.as_millis().max(1) as u64;
    delta.saturating_mul(1000) / ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_bytes_per_second_over_the_window() {
        let c = Counters::default();
        c.add_rx(4000);
        c.add_tx(1000);
        c.tick(Duration::from_secs(2));
        let s = c.snapshot();
        assert_eq!((s.rx_second, s.tx_second), (2000, 500));
        c.tick(Duration::from_secs(2));
        assert_eq!(c.snapshot().rx_second, 0, "no traffic, rate drops to 0");
        assert_eq!(c.bandwidth(), 0);
    }

    #[test]
    fn reservations_never_exceed_the_limit() {
        let c = Counters::default();
        assert!(c.try_reserve(2));
        assert!(c.try_reserve(2));
        assert!(!c.try_reserve(2));
        c.release();
        assert!(c.try_reserve(2));
        assert!(c.try_reserve(0), "0 = unlimited");
        c.release();
        c.release();
        c.release();
        c.release();
        assert_eq!(c.snapshot().active_connections, 0, "release saturates at 0");
    }
}

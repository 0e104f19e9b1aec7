//! `cargo bench --bench elect`: nanoseconds per `Balancer::elect` for every
//! strategy over 3, 30 and 300 candidates (std only, no harness).
//!
//! Candidates are passed in key order (the fast path for `roundrobin` and
//! `iphash`); the `unsorted` rows pass the same candidates in reverse key
//! order, which makes those two select the k-th key in a stack buffer.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use betwixt::balance::{BalanceKind, Balancer, Candidate, random_u64};

const RUN: Duration = Duration::from_millis(200);
const BATCH: u32 = 1_000;

fn candidates(keys: &[String]) -> Vec<Candidate<'_>> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| Candidate {
            key,
            priority: 0,
            weight: 1 + (i % 5) as u32,
            active: (i % 7) as u64,
            max_connections: 0,
            bandwidth: (i % 11) as u64 * 1_000,
            score: 100,
        })
        .collect()
}

/// Mean nanoseconds per election over about [`RUN`].
fn time(balancer: &Balancer, cands: &[Candidate<'_>]) -> f64 {
    let mut n = 0u64;
    let mut ip = 0x0a00_0001u32;
    let start = Instant::now();
    loop {
        for _ in 0..BATCH {
            ip = ip.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let client = IpAddr::V4(Ipv4Addr::from(ip));
            black_box(balancer.elect(black_box(cands), client, random_u64()));
        }
        n += u64::from(BATCH);
        let elapsed = start.elapsed();
        if elapsed >= RUN {
            return elapsed.as_nanos() as f64 / n as f64;
        }
    }
}

fn main() {
    let sizes = [3usize, 30, 300];
    print!("{:<24}", "ns/election");
    for n in sizes {
        print!("{:>10}", format!("n={n}"));
    }
    println!();
    let kinds = BalanceKind::NAMES
        .iter()
        .filter_map(|name| BalanceKind::parse(name));
    let unsorted = [BalanceKind::RoundRobin, BalanceKind::IpHash];
    let rows = kinds
        .map(|k| (k, false))
        .chain(unsorted.iter().map(|&k| (k, true)));
    for (kind, reversed) in rows {
        let label = if reversed {
            format!("{} (unsorted)", kind.name())
        } else {
            kind.name().to_string()
        };
        print!("{label:<24}");
        for n in sizes {
            let mut keys: Vec<String> = (0..n)
                .map(|i| format!("10.{}.{}.{}:8080", i / 65_536, i / 256 % 256, i % 256))
                .collect();
            keys.sort();
            if reversed {
                keys.reverse();
            }
            let cands = candidates(&keys);
            let balancer = Balancer::new(kind);
            print!("{:>10.1}", time(&balancer, &cands));
        }
        println!();
    }
}

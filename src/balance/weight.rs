//! `weight`: RFC 2782 style weighted random within the priority group.
//!
//! The group's weights are summed in a `u64` (a `u32` weight per candidate,
//! so the sum cannot overflow below 2^32 candidates; it saturates rather than
//! wraps beyond that). One full-range random number is scaled onto
//! `0..sum` by multiply-shift and the members are walked until the running
//! sum passes it, so a member's chance is exactly `weight / sum` (up to a
//! bias of `sum / 2^64`) and weight-0 members are never chosen.
//!
//! If the sum is 0 every member is equal: the pick is uniform among the
//! members with the highest score.

use super::{Group, scale};

pub(super) fn elect(group: &Group<'_, '_>, random: u64) -> Option<usize> {
    let sum = group
        .members()
        .fold(0u64, |acc, (_, c)| acc.saturating_add(u64::from(c.weight)));
    if sum == 0 {
        return uniform_best_scored(group, random);
    }
    let target = scale(random, sum);
    let mut acc = 0u64;
    let mut last = None;
    for (i, c) in group.members() {
        if c.weight == 0 {
            continue;
        }
        acc = acc.saturating_add(u64::from(c.weight));
        if target < acc {
            return Some(i);
        }
        last = Some(i);
    }
    // Only reachable if the sum saturated; fall back to the last weighted one.
    last
}

/// Uniform pick among the members with the highest score.
fn uniform_best_scored(group: &Group<'_, '_>, random: u64) -> Option<usize> {
    let mut best = 0u32;
    let mut count = 0u64;
    for (_, c) in group.members() {
        if count == 0 || c.score > best {
            best = c.score;
            count = 1;
        } else if c.score == best {
            count += 1;
        }
    }
    let nth = scale(random, count);
    group
        .members()
        .filter(|(_, c)| c.score == best)
        .nth(usize::try_from(nth).unwrap_or(0))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cand, keys};
    use super::super::{BalanceKind, Balancer, Candidate, random_u64};
    use std::net::{IpAddr, Ipv4Addr};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    /// gobetween weight_test (c): weights 20/15/25/40 at priority 1 plus a
    /// priority-2 backend of weight 244; over 1e6 elections each share is
    /// within 0.5 percentage points of its weight, the standby never chosen.
    #[test]
    fn shares_follow_weights_and_priority_2_is_standby() {
        let ks = keys(5);
        let weights = [20u32, 15, 25, 40, 244];
        let cands: Vec<_> = ks
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (k, w))| Candidate {
                weight: w,
                priority: if i == 4 { 2 } else { 1 },
                ..cand(k)
            })
            .collect();
        let b = Balancer::new(BalanceKind::Weight);
        let mut seen = [0u64; 5];
        const N: u64 = 1_000_000;
        for _ in 0..N {
            seen[b.elect(&cands, CLIENT, random_u64()).unwrap()] += 1;
        }
        assert_eq!(seen[4], 0);
        for (i, w) in weights[..4].iter().enumerate() {
            let pct = seen[i] as f64 * 100.0 / N as f64;
            assert!(
                (pct - f64::from(*w)).abs() <= 0.5,
                "backend {i}: {pct:.3}% vs {w}%"
            );
        }
    }

    /// gobetween weight_test (a): 9 backends over priorities 0/1/2 with
    /// weights 0/1/2 → every election comes from priority 0 (and never from
    /// its weight-0 member).
    #[test]
    fn lowest_priority_group_wins() {
        let ks = keys(9);
        let cands: Vec<_> = ks
            .iter()
            .enumerate()
            .map(|(i, k)| Candidate {
                priority: (i / 3) as u32,
                weight: (i % 3) as u32,
                ..cand(k)
            })
            .collect();
        let b = Balancer::new(BalanceKind::Weight);
        let mut seen = [0u32; 9];
        for _ in 0..10_000 {
            let i = b.elect(&cands, CLIENT, random_u64()).unwrap();
            assert_eq!(cands[i].priority, 0);
            seen[i] += 1;
        }
        assert_eq!(seen[0], 0, "weight 0 in a non-zero group was chosen");
        assert!(seen[1] > 0 && seen[2] > seen[1], "{seen:?}");
    }

    /// gobetween weight_test (b): all weights 0 → all chosen within 100 tries.
    #[test]
    fn all_zero_weights_pick_uniformly() {
        let ks = keys(3);
        let cands: Vec<_> = ks
            .iter()
            .map(|k| Candidate {
                weight: 0,
                ..cand(k)
            })
            .collect();
        let b = Balancer::new(BalanceKind::Weight);
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[b.elect(&cands, CLIENT, random_u64()).unwrap()] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn all_zero_weights_prefer_higher_score() {
        let ks = keys(4);
        let mut cands: Vec<_> = ks
            .iter()
            .map(|k| Candidate {
                weight: 0,
                ..cand(k)
            })
            .collect();
        cands[0].score = 50;
        cands[3].score = 10;
        let b = Balancer::new(BalanceKind::Weight);
        let mut seen = [0u32; 4];
        for _ in 0..1_000 {
            seen[b.elect(&cands, CLIENT, random_u64()).unwrap()] += 1;
        }
        assert_eq!((seen[0], seen[3]), (0, 0), "{seen:?}");
        assert!(seen[1] > 0 && seen[2] > 0, "{seen:?}");
    }

    #[test]
    fn boundaries_of_the_random_draw() {
        let ks = keys(3);
        let ws = [1u32, 0, u32::MAX];
        let cands: Vec<_> = ks
            .iter()
            .zip(ws)
            .map(|(k, w)| Candidate {
                weight: w,
                ..cand(k)
            })
            .collect();
        let b = Balancer::new(BalanceKind::Weight);
        assert_eq!(b.elect(&cands, CLIENT, 0), Some(0));
        assert_eq!(b.elect(&cands, CLIENT, u64::MAX), Some(2));
        assert_eq!(b.elect(&cands, CLIENT, u64::MAX / 2), Some(2));
    }

    #[test]
    fn huge_weights_share_fairly() {
        let ks = keys(2);
        let cands: Vec<_> = ks
            .iter()
            .map(|k| Candidate {
                weight: u32::MAX,
                ..cand(k)
            })
            .collect();
        let b = Balancer::new(BalanceKind::Weight);
        let mut seen = [0u32; 2];
        for _ in 0..10_000 {
            seen[b.elect(&cands, CLIENT, random_u64()).unwrap()] += 1;
        }
        assert!(seen[0] > 4_500 && seen[1] > 4_500, "{seen:?}");
    }
}

//! `leastconn` and `leastbandwidth`: the member with the smallest load.
//!
//! The load is `active` (open connections, reservations included) for
//! `leastconn` and `bandwidth` (rx + tx bytes per second) for
//! `leastbandwidth`. Members with the same minimal load are equal: among
//! them the highest score wins, and members equal in both are picked
//! uniformly at random with the election's random number (gobetween always
//! takes the first or last in map order, which here would herd every burst of
//! connections onto one backend).
//!
//! Two passes, no allocation: the first finds the minimal load, the best
//! score at that load and how many members share both; the second returns the
//! `r`-th of them, `r` scaled from `random`.

use super::{Candidate, Group, scale};

pub(super) fn elect(
    group: &Group<'_, '_>,
    random: u64,
    load: impl Fn(&Candidate<'_>) -> u64,
) -> Option<usize> {
    let mut best: Option<(u64, u32)> = None;
    let mut ties = 0u64;
    for (_, c) in group.members() {
        let key = (load(c), c.score);
        match best {
            // Lower load wins; at equal load the higher score wins.
            Some((bl, bs)) if key.0 > bl || (key.0 == bl && key.1 < bs) => {}
            Some(b) if b == key => ties += 1,
            _ => {
                best = Some(key);
                ties = 1;
            }
        }
    }
    let best = best?;
    let nth = usize::try_from(scale(random, ties)).unwrap_or(0);
    group
        .members()
        .filter(|(_, c)| (load(c), c.score) == best)
        .nth(nth)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cand, keys};
    use super::super::{BalanceKind, Balancer, Candidate, random_u64};
    use std::net::{IpAddr, Ipv4Addr};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn set(c: &mut Candidate<'_>, kind: BalanceKind, load: u64) {
        match kind {
            BalanceKind::LeastConn => c.active = load,
            _ => c.bandwidth = load,
        }
    }

    const KINDS: [BalanceKind; 2] = [BalanceKind::LeastConn, BalanceKind::LeastBandwidth];

    #[test]
    fn chooses_the_minimum() {
        for kind in KINDS {
            let ks = keys(5);
            let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
            for (c, l) in cands.iter_mut().zip([7u64, 3, 9, 2, 5]) {
                set(c, kind, l);
            }
            let b = Balancer::new(kind);
            for _ in 0..100 {
                assert_eq!(b.elect(&cands, CLIENT, random_u64()), Some(3), "{kind:?}");
            }
        }
    }

    #[test]
    fn spreads_ties_at_the_minimum() {
        for kind in KINDS {
            let ks = keys(5);
            let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
            for (c, l) in cands.iter_mut().zip([1u64, 0, 4, 0, 0]) {
                set(c, kind, l);
            }
            let b = Balancer::new(kind);
            let mut seen = [0u32; 5];
            for _ in 0..3_000 {
                seen[b.elect(&cands, CLIENT, random_u64()).unwrap()] += 1;
            }
            assert_eq!(seen[0] + seen[2], 0, "{kind:?} {seen:?}");
            for i in [1, 3, 4] {
                assert!((800..=1200).contains(&seen[i]), "{kind:?} {seen:?}");
            }
            // The random number alone decides among ties.
            assert_eq!(b.elect(&cands, CLIENT, 0), Some(1));
            assert_eq!(b.elect(&cands, CLIENT, u64::MAX), Some(4));
        }
    }

    #[test]
    fn score_breaks_ties_before_randomness() {
        for kind in KINDS {
            let ks = keys(4);
            let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
            for (c, l) in cands.iter_mut().zip([0u64, 0, 0, 1]) {
                set(c, kind, l);
            }
            cands[0].score = 40;
            cands[1].score = 90;
            cands[2].score = 60;
            cands[3].score = 100; // higher score but higher load: load wins
            let b = Balancer::new(kind);
            for _ in 0..200 {
                assert_eq!(b.elect(&cands, CLIENT, random_u64()), Some(1), "{kind:?}");
            }
        }
    }

    #[test]
    fn the_other_load_is_ignored() {
        let ks = keys(2);
        let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        cands[0].active = 10;
        cands[1].bandwidth = 10;
        assert_eq!(
            Balancer::new(BalanceKind::LeastConn).elect(&cands, CLIENT, 0),
            Some(1)
        );
        assert_eq!(
            Balancer::new(BalanceKind::LeastBandwidth).elect(&cands, CLIENT, 0),
            Some(0)
        );
    }
}

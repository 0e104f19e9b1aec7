//! `roundrobin`: the group in key order, one after the other.
//!
//! # Approach
//!
//! One `AtomicUsize` per server counts elections: each election takes
//! `k = counter.fetch_add(1, Relaxed) % len` and returns the `k`-th member in
//! `(key, slice index)` order. `fetch_add` hands every concurrent election a
//! distinct ticket, so fairness is exact even under contention: with `n`
//! members any `m * n` consecutive elections give each member exactly `m`
//! (3 backends, 3000 elections → 1000 each). Like gobetween the counter is
//! shared by whatever group the election sees, so when the group changes
//! (a backend hits `max_connections`, priorities fail over) the position
//! carries on from where it was rather than restarting.
//!
//! Finding the `k`-th smallest key without allocating ([`nth_by_key`]):
//!
//! 1. **Sorted input, O(n):** one pass checks whether the members already
//!    appear in key order in the slice (the cheap `n - 1` comparisons of
//!    adjacent keys); if so the `k`-th member in slice order is the answer.
//!    Callers that keep backends ordered by `"host:port"` (e.g. in a
//!    `BTreeMap`) always take this path.
//! 2. **Unsorted, up to [`STACK_MEMBERS`] members, O(n) expected:** member
//!    indices are copied into a fixed array on the stack and
//!    `select_nth_unstable_by` (introselect, no allocation) finds the `k`-th.
//! 3. **Unsorted and larger:** rank by counting, O(n²) — a documented
//!    slow path for unsorted groups of thousands of backends.
//!
//! An alternative that is O(n) on any input ("the member with the smallest
//! key greater than the last chosen one") needs the last key stored between
//! elections, which means either a lock or storing a hash and ordering by it
//! instead of by key; it also loses exact fairness when two elections race
//! on the same "last" value. The ticket counter keeps both properties.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{Candidate, Group};

/// Largest unsorted group that is selected in a stack buffer.
pub(super) const STACK_MEMBERS: usize = 1024;

pub(super) fn elect(group: &Group<'_, '_>, next: &AtomicUsize) -> Option<usize> {
    let ticket = next.fetch_add(1, Relaxed);
    group.nth_by_key(ticket % group.len)
}

/// Total order of members: key, then position in the slice.
#[inline]
fn by_key(a: (usize, &Candidate<'_>), b: (usize, &Candidate<'_>)) -> Ordering {
    a.1.key.cmp(b.1.key).then(a.0.cmp(&b.0))
}

/// Index of the `k`-th member (0-based) in `(key, index)` order; `None` only
/// if `k >= group.len`.
pub(super) fn nth_by_key(group: &Group<'_, '_>, k: usize) -> Option<usize> {
    if k >= group.len {
        return None;
    }
    // 1. Already in key order? (Slice order breaks key ties the same way.)
    let mut prev: Option<&str> = None;
    let sorted = group.members().all(|(_, c)| {
        let ok = prev.is_none_or(|p| p <= c.key);
        prev = Some(c.key);
        ok
    });
    if sorted {
        return group.members().nth(k).map(|(i, _)| i);
    }
    // 2. Select in a stack buffer of indices.
    if group.len <= STACK_MEMBERS {
        let mut buf = [0u32; STACK_MEMBERS];
        let mut n = 0;
        for (i, _) in group.members() {
            let (Some(slot), Ok(i)) = (buf.get_mut(n), u32::try_from(i)) else {
                return nth_by_rank(group, k);
            };
            *slot = i;
            n += 1;
        }
        let all = group.all;
        let members = &mut buf[..n];
        let key_of = |i: u32| {
            let i = i as usize;
            all.get(i).map(|c| (i, c))
        };
        if k >= members.len() {
            return None;
        }
        let (_, nth, _) =
            members.select_nth_unstable_by(k, |&a, &b| match (key_of(a), key_of(b)) {
                (Some(a), Some(b)) => by_key(a, b),
                _ => a.cmp(&b),
            });
        return Some(*nth as usize);
    }
    // 3. Count ranks.
    nth_by_rank(group, k)
}

/// O(n²) fallback: the member with exactly `k` members before it.
fn nth_by_rank(group: &Group<'_, '_>, k: usize) -> Option<usize> {
    group
        .members()
        .find(|&m| {
            group
                .members()
                .filter(|&o| by_key(o, m) == Ordering::Less)
                .count()
                == k
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cand, keys};
    use super::super::{BalanceKind, Balancer, Candidate, Group, random_u64};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn exact_fairness() {
        let ks = keys(3);
        let cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        let b = Balancer::new(BalanceKind::RoundRobin);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[b.elect(&cands, CLIENT, random_u64()).unwrap()] += 1;
        }
        assert_eq!(seen, [1000; 3]);
    }

    #[test]
    fn exact_fairness_under_threads() {
        let ks = keys(7);
        let cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        let b = Balancer::new(BalanceKind::RoundRobin);
        let totals = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen = [0u32; 7];
                        for _ in 0..7_000 {
                            seen[b.elect(&cands, CLIENT, 0).unwrap()] += 1;
                        }
                        seen
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold([0u32; 7], |mut acc, s| {
                    for (a, x) in acc.iter_mut().zip(s) {
                        *a += x;
                    }
                    acc
                })
        });
        assert_eq!(totals, [4_000; 7]);
    }

    #[test]
    fn visits_in_key_order_whatever_the_slice_order() {
        let ks = ["b:1", "d:1", "a:1", "c:1", "e:1"];
        let cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        let b = Balancer::new(BalanceKind::RoundRobin);
        let order: String = (0..10)
            .map(|_| &cands[b.elect(&cands, CLIENT, 0).unwrap()].key[..1])
            .collect();
        assert_eq!(order, "abcdeabcde");
    }

    #[test]
    fn skips_full_backends_and_stays_fair_among_the_rest() {
        let ks = keys(4);
        let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        cands[1] = Candidate {
            max_connections: 1,
            active: 1,
            ..cands[1]
        };
        let b = Balancer::new(BalanceKind::RoundRobin);
        let mut seen = [0u32; 4];
        for _ in 0..300 {
            seen[b.elect(&cands, CLIENT, 0).unwrap()] += 1;
        }
        assert_eq!(seen, [100, 0, 100, 100]);
    }

    /// All three selection paths agree with a plain sort.
    #[test]
    fn nth_by_key_paths_agree_with_sorting() {
        // The last size leaves more than STACK_MEMBERS members: the O(n²) path.
        for n in [1usize, 2, 3, 10, 200, STACK_MEMBERS * 5 / 4 + 10] {
            // Pseudo-random keys with duplicates, some members filtered out.
            let ks: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        "k{}",
                        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) % (n as u64 / 2 + 1)
                    )
                })
                .collect();
            let mut cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
            for (i, c) in cands.iter_mut().enumerate() {
                if i % 5 == 3 {
                    c.priority = 9;
                }
            }
            let group = Group::of(&cands).unwrap();
            let mut expect: Vec<usize> = (0..n).filter(|i| i % 5 != 3).collect();
            expect.sort_by(|&a, &b| ks[a].cmp(&ks[b]).then(a.cmp(&b)));
            let mut sorted_cands = cands.clone();
            sorted_cands.sort_by(|a, b| a.key.cmp(b.key));
            let sorted_group = Group::of(&sorted_cands).unwrap();
            let step = (expect.len() / 20).max(1);
            for k in (0..expect.len()).step_by(step) {
                assert_eq!(nth_by_key(&group, k), Some(expect[k]), "n={n} k={k}");
                assert_eq!(nth_by_rank(&group, k), Some(expect[k]), "n={n} k={k}");
                let got = nth_by_key(&sorted_group, k).unwrap();
                assert_eq!(sorted_cands[got].key, ks[expect[k]], "n={n} k={k}");
            }
            assert_eq!(nth_by_key(&group, expect.len()), None);
        }
    }
}

//! `iphash` and `iphash1`: the client address decides.
//!
//! * `iphash`: FNV-1a 32 over the client IP bytes, index = hash mod n over
//!   the group in key order. Any change of the group reshuffles clients
//!   (as in gobetween). No ties, so score is not consulted: a client's
//!   backend does not change with health-score noise.
//! * `iphash1`: rendezvous (highest random weight) hashing. Every member
//!   gets `h = FNV-1a 32 (client IP bytes ‖ key)` and the highest `h` wins;
//!   equal hashes (rare) go to the higher score, then the smaller key, then
//!   the lower slice index. Removing a member moves only the clients that
//!   were on it; adding one moves about 1/n of the clients, all to it. The
//!   FNV state after the IP bytes is computed once per election and then
//!   continued over each key. The output is passed through a 32-bit
//!   avalanche finaliser (murmur3 `fmix32`, a bijection) before comparing:
//!   raw FNV-1a mixes the last bytes of similar keys (`10.0.0.1:80`,
//!   `10.0.0.2:80`, …) poorly into the high bits, which skews the max.
//!
//! IPv4-mapped IPv6 clients hash as their 4 IPv4 bytes (see the module
//! docs of [`super`]).

use std::net::IpAddr;

use super::{FNV32_OFFSET, Group, fnv1a32, ip_bytes};

pub(super) fn elect(group: &Group<'_, '_>, client: IpAddr) -> Option<usize> {
    let (bytes, n) = ip_bytes(client);
    let hash = fnv1a32(FNV32_OFFSET, bytes.get(..n).unwrap_or(&bytes));
    // u32 -> usize is lossless on every target we build for (>= 32 bit);
    // the fallback only keeps this total.
    let k = match usize::try_from(hash) {
        Ok(h) => h % group.len,
        Err(_) => (u64::from(hash) % group.len as u64) as usize,
    };
    group.nth_by_key(k)
}

/// murmur3's 32-bit finaliser: a bijection with full avalanche.
#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The rendezvous weight of `key` for a client whose FNV state is `base`.
#[inline]
fn weight(base: u32, key: &str) -> u32 {
    fmix32(fnv1a32(base, key.as_bytes()))
}

pub(super) fn elect_rendezvous(group: &Group<'_, '_>, client: IpAddr) -> Option<usize> {
    let (bytes, n) = ip_bytes(client);
    let base = fnv1a32(FNV32_OFFSET, bytes.get(..n).unwrap_or(&bytes));
    let mut best: Option<(usize, u32, u32, &str)> = None;
    for (i, c) in group.members() {
        let h = weight(base, c.key);
        let better = match best {
            None => true,
            Some((_, bh, bscore, bkey)) => h
                .cmp(&bh)
                .then(c.score.cmp(&bscore))
                .then(bkey.cmp(c.key))
                .is_gt(),
        };
        if better {
            best = Some((i, h, c.score, c.key));
        }
    }
    best.map(|(i, ..)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cand, keys};
    use super::super::{BalanceKind, Balancer, random_u64};
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// 1000 random clients, half IPv4, half IPv6.
    fn clients() -> Vec<IpAddr> {
        (0..1000)
            .map(|i| {
                let r = random_u64();
                if i % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::from(r as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(
                        u128::from(r) << 64 | u128::from(random_u64()),
                    ))
                }
            })
            .collect()
    }

    fn elect_key<'a>(b: &Balancer, ks: &'a [String], ip: IpAddr) -> &'a str {
        let cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        let i = b.elect(&cands, ip, random_u64()).unwrap();
        &ks[i]
    }

    /// gobetween iphash_test, extended: removing a backend moves only the
    /// clients that were on it.
    #[test]
    fn rendezvous_removal_moves_only_the_removed_backends_clients() {
        let b = Balancer::new(BalanceKind::IpHash1);
        let four = keys(4);
        let three: Vec<String> = four.iter().filter(|k| *k != &four[1]).cloned().collect();
        let mut moved = 0;
        let mut per_backend = [0u32; 4];
        for ip in clients() {
            let before = elect_key(&b, &four, ip);
            per_backend[four.iter().position(|k| k == before).unwrap()] += 1;
            let after = elect_key(&b, &three, ip);
            if before != four[1] {
                assert_eq!(before, after, "{ip} moved off a surviving backend");
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, per_backend[1]);
        // And the load is spread: every backend gets a fair share of 1000.
        for n in per_backend {
            assert!((170..=330).contains(&n), "{per_backend:?}");
        }
    }

    #[test]
    fn rendezvous_addition_moves_about_one_in_n_and_only_to_the_new_one() {
        let b = Balancer::new(BalanceKind::IpHash1);
        let five = keys(5);
        let four = &five[..4];
        let mut moved = 0;
        for ip in clients() {
            let before = elect_key(&b, four, ip);
            let after = elect_key(&b, &five, ip);
            if before != after {
                assert_eq!(after, five[4], "{ip} moved between old backends");
                moved += 1;
            }
        }
        // Expect 1000 / 5 = 200.
        assert!((130..=270).contains(&moved), "moved {moved}");
    }

    /// Without the finaliser, keys differing only in the last port digit
    /// split 200k sequential clients 6.5 % / 24 % instead of 10 % each.
    #[test]
    fn rendezvous_spreads_similar_keys_evenly() {
        let ks: Vec<String> = (0..10).map(|i| format!("10.0.0.1:800{i}")).collect();
        let cands: Vec<_> = ks.iter().map(|k| cand(k)).collect();
        let g = Group::of(&cands).unwrap();
        let mut seen = [0u32; 10];
        for ip in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + ip));
            seen[elect_rendezvous(&g, ip).unwrap()] += 1;
        }
        for n in seen {
            assert!((1_700..=2_300).contains(&n), "{seen:?}");
        }
    }

    #[test]
    fn rendezvous_is_independent_of_slice_order() {
        let b = Balancer::new(BalanceKind::IpHash1);
        let ks = keys(6);
        let mut rev = ks.clone();
        rev.reverse();
        for ip in clients().into_iter().take(200) {
            assert_eq!(elect_key(&b, &ks, ip), elect_key(&b, &rev, ip));
        }
    }

    #[test]
    fn iphash_is_stable_and_spreads() {
        let b = Balancer::new(BalanceKind::IpHash);
        let ks = keys(4);
        let mut rev = ks.clone();
        rev.reverse();
        let mut per_backend = [0u32; 4];
        for ip in clients() {
            let first = elect_key(&b, &ks, ip);
            for _ in 0..3 {
                assert_eq!(elect_key(&b, &ks, ip), first);
            }
            // Key order, not slice order, decides.
            assert_eq!(elect_key(&b, &rev, ip), first);
            per_backend[ks.iter().position(|k| k == first).unwrap()] += 1;
        }
        for n in per_backend {
            assert!((170..=330).contains(&n), "{per_backend:?}");
        }
    }

    #[test]
    fn iphash_matches_fnv_mod_n() {
        let b = Balancer::new(BalanceKind::IpHash);
        let ks = keys(3);
        let ip = Ipv4Addr::new(198, 51, 100, 23);
        let k = fnv1a32(FNV32_OFFSET, &ip.octets()) as usize % 3;
        assert_eq!(elect_key(&b, &ks, IpAddr::V4(ip)), ks[k]);
    }

    #[test]
    fn mapped_ipv6_client_gets_the_same_backend_as_ipv4() {
        for kind in [BalanceKind::IpHash, BalanceKind::IpHash1] {
            let b = Balancer::new(kind);
            let ks = keys(7);
            for i in 0..200u32 {
                let v4 = Ipv4Addr::from(i.wrapping_mul(0x9e37_79b9));
                assert_eq!(
                    elect_key(&b, &ks, IpAddr::V4(v4)),
                    elect_key(&b, &ks, IpAddr::V6(v4.to_ipv6_mapped())),
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn rendezvous_ties_prefer_score_then_smaller_key() {
        // Duplicate keys hash equally: a real tie.
        let mut cands = [cand("b:1"), cand("a:1"), cand("a:1")];
        cands[1].score = 50;
        let g = Group::of(&cands).unwrap();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Higher score first, then the lower index of two equal keys.
        let got = elect_rendezvous(&g, ip).unwrap();
        let h = |k| weight(fnv1a32(FNV32_OFFSET, &[127, 0, 0, 1]), k);
        if h("a:1") > h("b:1") {
            assert_eq!(got, 2);
        } else {
            assert_eq!(got, 0);
        }
        let cands = [cand("a:1"), cand("a:1")];
        assert_eq!(elect_rendezvous(&Group::of(&cands).unwrap(), ip), Some(0));
    }
}

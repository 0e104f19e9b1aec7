//! Bounded fuzzing of the data path's parsers: the ClientHello/SNI parser
//! (whole and by prefix), SNI host matchers, access rules and CIDRs,
//! PROXY headers for any address pair, UDP session verdicts and the
//! control messages of transparent UDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::access::{AccessList, Rule};
use super::sni::tests::{hello_body, records, sni_ext};
use super::sni::{self, HelloError, HostMatcher};
use crate::config::{HostnameMatching, ProxyProtocolVersion};
use crate::fuzz;

/// A ClientHello with an SNI extension, in records of `chunk` bytes.
fn hello(name: &str, chunk: usize) -> Vec<u8> {
    let groups = (10, vec![0, 29]);
    records(&hello_body(&[groups, sni_ext(name)]), chunk)
}

#[test]
fn fuzz_client_hello() {
    let samples = [
        hello("a.example.test", 4096),
        hello("B.Example.", 7),
        hello("x", 1),
    ];
    let samples: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
    fuzz::run("client hello", 51, 1500, &samples, |buf| {
        // As `peek_hello` sees it: at most MAX_HELLO bytes.
        let buf = &buf[..buf.len().min(sni::MAX_HELLO)];
        if let Ok(Some(name)) = sni::parse(buf) {
            assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(name, name.to_ascii_lowercase());
        }
    });
}

#[test]
fn every_prefix_of_a_hello_is_incomplete() {
    for chunk in [1, 5, 300] {
        let full = hello("a.example.test", chunk);
        for n in 0..full.len() {
            assert_eq!(
                sni::parse(&full[..n]),
                Err(HelloError::Incomplete),
                "{chunk}/{n}"
            );
        }
        assert_eq!(sni::parse(&full), Ok(Some("a.example.test".into())));
    }
}

#[test]
fn a_server_name_of_dots_is_no_name() {
    for name in [".", "..."] {
        assert!(
            matches!(
                sni::parse(&hello(name, 4096)),
                Err(HelloError::Malformed(_))
            ),
            "{name}"
        );
    }
    assert_eq!(sni::parse(&hello("A.b.", 4096)), Ok(Some("a.b".into())));
}

#[test]
fn fuzz_host_matchers() {
    let samples = [
        "a.example",
        r".*\.example\.test",
        "(a|b)+",
        "x{1000}",
        "[",
        "é",
    ];
    let hosts = ["a.example", "b.example.test", "", "aaaa"];
    let mut i = 0;
    fuzz::run_str("sni matcher", 52, 100, &samples, |pattern| {
        i += 1;
        for strategy in [HostnameMatching::Exact, HostnameMatching::Regexp] {
            let m = HostMatcher::new(strategy, pattern);
            let _ = m.matches(hosts[i % hosts.len()]);
        }
    });
}

fn random_ip(rng: &mut fuzz::Rng) -> IpAddr {
    match rng.below(4) {
        0 => IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
        1 => IpAddr::V6(Ipv4Addr::from(rng.next_u64() as u32).to_ipv6_mapped()),
        2 => IpAddr::V6(Ipv6Addr::from(
            (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()),
        )),
        _ => *rng.pick(&[
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        ]),
    }
}

#[test]
fn fuzz_access_rules() {
    let samples = [
        "allow 198.18.0.0/15",
        "deny ::1/128",
        "allow ::ffff:10.0.0.0/104",
        "deny 0.0.0.0/0",
        "allow 2001:db8::/32",
        "deny 127.0.0.1",
    ];
    let mut rng = fuzz::Rng::new(53);
    fuzz::run_str("access rule", 54, 750, &samples, |text| {
        let Ok(rule) = Rule::parse(text) else {
            return;
        };
        // A rule contains its own network address (but an IPv6 rule never
        // an IPv4-mapped one), and the list decides.
        let own = rule.network;
        assert!(
            rule.matches(own) || own.to_canonical() != own,
            "{text:?} -> {rule:?}"
        );
        let list = AccessList::parse("deny", &[text.to_string()]).expect("parsed once");
        let ip = random_ip(&mut rng);
        assert_eq!(
            list.allows(ip),
            rule.matches(ip) && rule.allow,
            "{text:?} {ip}"
        );
    });
    for _ in 0..2000 {
        let ip = random_ip(&mut rng);
        let rule = Rule::new(rng.one_in(2), ip, rng.next_u64() as u8);
        assert!(rule.prefix <= 128, "{rule:?}");
        // An IPv4-mapped client is matched as IPv4: only an IPv4 rule
        // (a mapped network with prefix >= 96) can contain it.
        if ip.to_canonical() == ip || rule.network.is_ipv4() {
            assert!(rule.matches(ip), "{rule:?} {ip}");
        }
    }
}

#[test]
fn fuzz_proxy_headers() {
    let mut rng = fuzz::Rng::new(55);
    for _ in 0..3000 {
        let src = SocketAddr::new(random_ip(&mut rng), rng.next_u64() as u16);
        let dst = SocketAddr::new(random_ip(&mut rng), rng.next_u64() as u16);
        let v1 = super::proxy_protocol::header(ProxyProtocolVersion::V1, src, dst);
        assert!(v1.len() <= 107 && v1.ends_with(b"\r\n"), "{src} {dst}");
        let v2 = super::proxy_protocol::header(ProxyProtocolVersion::V2, src, dst);
        let declared = usize::from(u16::from_be_bytes([v2[14], v2[15]]));
        assert_eq!(v2.len(), 16 + declared, "{src} {dst}");
    }
}

#[test]
fn fuzz_udp_verdicts() {
    use super::udp::{Limits, Seen, Verdict};
    let mut rng = fuzz::Rng::new(56);
    for _ in 0..5000 {
        fn t(rng: &mut fuzz::Rng) -> u64 {
            match rng.below(3) {
                0 => *rng.pick(&[0, 1, 10, u64::MAX - 1, u64::MAX]),
                _ => rng.next_u64() >> rng.below(64),
            }
        }
        let limits = Limits {
            client_idle: rng.one_in(2).then(|| t(&mut rng)),
            backend_idle: rng.one_in(2).then(|| t(&mut rng)),
            max_responses: t(&mut rng),
        };
        let seen = Seen {
            last_client: t(&mut rng),
            last_backend: t(&mut rng),
            requests: t(&mut rng),
            responses: t(&mut rng),
            detached: rng.one_in(2),
        };
        let now = t(&mut rng);
        if let Verdict::WaitUntil(at) = limits.end(&seen, now) {
            assert!(at > now || at == u64::MAX, "{limits:?} {seen:?} {now}");
        }
    }
}

#[test]
fn fuzz_pktinfo_control() {
    use super::udp_pktinfo::{CmsgBuf, Local, decode, encode};
    let mut samples = Vec::new();
    for (addr, v6) in [("198.18.0.1", false), ("::1", true), ("198.18.0.1", true)] {
        let mut c = CmsgBuf::new();
        let local = Local {
            addr: addr.parse().expect("ip"),
            ifindex: 7,
        };
        let n = encode(&local, v6, &mut c);
        samples.push(c.0[..n].to_vec());
    }
    let samples: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
    let mut rng = fuzz::Rng::new(57);
    fuzz::run("pktinfo", 58, 1500, &samples, |bytes| {
        let mut c = CmsgBuf::new();
        let n = bytes.len().min(c.0.len());
        c.0[..n].copy_from_slice(&bytes[..n]);
        // The length the kernel reports, or a wrong one.
        let len = if rng.one_in(4) { rng.below(4096) } else { n };
        let _ = decode(&c, len);
    });
}

#[test]
fn a_huge_control_length_ends_the_walk() {
    // CMSG_NXTHDR adds the (aligned) length to the pointer: usize::MAX
    // overflowed inside libc, which aborts a debug build.
    use super::udp_pktinfo::{CmsgBuf, decode};
    // The header's own layout: cmsg_len is a size_t (4 bytes on armv7).
    use std::mem::{offset_of, size_of};
    let mut c = CmsgBuf::new();
    let w = size_of::<usize>();
    let level = offset_of!(libc::cmsghdr, cmsg_level);
    let kind = offset_of!(libc::cmsghdr, cmsg_type);
    c.0[..w].copy_from_slice(&usize::MAX.to_ne_bytes());
    c.0[level..level + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
    c.0[kind..kind + 4].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
    assert_eq!(decode(&c, 128), None);
}

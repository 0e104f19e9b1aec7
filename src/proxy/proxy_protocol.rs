//! PROXY protocol v1 (text) and v2 (binary) headers sent to backends.
//!
//! Per HAProxy's `proxy-protocol.txt`:
//!
//! * v1: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`), at most
//!   107 bytes.
//! * v2: the 12-byte signature `\r\n\r\n\0\r\nQUIT\n`, `0x21` (version 2,
//!   command PROXY), the family/transport byte (`0x11` TCP over IPv4, `0x21`
//!   TCP over IPv6), the big-endian length of the address block (12 or 36),
//!   then source address, destination address, source port, destination
//!   port, all in network byte order. No TLVs.
//!
//! Address families: both addresses are first normalised (an IPv4-mapped
//! IPv6 address such as a dual-stack listener reports, `::ffff:a.b.c.d`,
//! becomes IPv4). If both are then IPv4 the header is TCP4; otherwise
//! TCP6, with an IPv4 address written as IPv4-mapped IPv6, since the
//! protocol has no mixed form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::ProxyProtocolVersion;

/// The v2 signature.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
const V2_PROXY: u8 = 0x21;
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// Both endpoints in one family.
enum Pair {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl Pair {
    fn of(src: IpAddr, dst: IpAddr) -> Self {
        let v6 = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        match (src.to_canonical(), dst.to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Self::V4(s.octets(), d.octets()),
            (s, d) => Self::V6(v6(s).octets(), v6(d).octets()),
        }
    }
}

/// The header announcing a connection from `src` (the client) to `dst` (the
/// address the client connected to).
pub fn header(version: ProxyProtocolVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let pair = Pair::of(src.ip(), dst.ip());
    match version {
        ProxyProtocolVersion::V1 => v1(&pair, src.port(), dst.port()),
        ProxyProtocolVersion::V2 => v2(&pair, src.port(), dst.port()),
    }
}

fn v1(pair: &Pair, sport: u16, dport: u16) -> Vec<u8> {
    let line = match *pair {
        Pair::V4(s, d) => format!(
            "PROXY TCP4 {} {} {sport} {dport}\r\n",
            Ipv4Addr::from(s),
            Ipv4Addr::from(d)
        ),
        Pair::V6(s, d) => format!(
            "PROXY TCP6 {} {} {sport} {dport}\r\n",
            Ipv6Addr::from(s),
            Ipv6Addr::from(d)
        ),
    };
    line.into_bytes()
}

fn v2(pair: &Pair, sport: u16, dport: u16) -> Vec<u8> {
    let (family, src, dst): (u8, &[u8], &[u8]) = match pair {
        Pair::V4(s, d) => (V2_TCP4, s, d),
        Pair::V6(s, d) => (V2_TCP6, s, d),
    };
    // 12 or 36: two addresses and two ports.
    let len = (src.len() + dst.len() + 4) as u16;
    let mut out = Vec::with_capacity(16 + usize::from(len));
    out.extend_from_slice(&SIGNATURE);
    out.push(V2_PROXY);
    out.push(family);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(src);
    out.extend_from_slice(dst);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProxyProtocolVersion::{V1, V2};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4() {
        let h = header(V1, sa("192.0.2.10:56324"), sa("198.51.100.1:443"));
        assert_eq!(h, b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n");
    }

    #[test]
    fn v1_tcp6() {
        let h = header(V1, sa("[2001:db8::1]:65535"), sa("[2001:db8:0:1::2]:80"));
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 2001:db8:0:1::2 65535 80\r\n");
    }

    #[test]
    fn v1_mapped_client_on_dual_stack_listener_is_tcp4() {
        let h = header(
            V1,
            sa("[::ffff:192.0.2.10]:1000"),
            sa("[::ffff:10.0.0.1]:80"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.10 10.0.0.1 1000 80\r\n");
        // Mapped client, plain IPv4 destination (and vice versa).
        let h = header(V1, sa("[::ffff:192.0.2.10]:1000"), sa("10.0.0.1:80"));
        assert_eq!(h, b"PROXY TCP4 192.0.2.10 10.0.0.1 1000 80\r\n");
    }

    #[test]
    fn v1_mixed_families_become_tcp6() {
        let h = header(V1, sa("192.0.2.10:1000"), sa("[2001:db8::5]:80"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.10 2001:db8::5 1000 80\r\n");
        let h = header(V1, sa("[2001:db8::5]:1000"), sa("192.0.2.10:80"));
        assert_eq!(h, b"PROXY TCP6 2001:db8::5 ::ffff:192.0.2.10 1000 80\r\n");
    }

    #[test]
    fn v1_longest_header_fits_107_bytes() {
        let h = header(
            V1,
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"),
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        );
        assert_eq!(h.len(), 104);
        assert!(h.len() <= 107);
    }

    #[test]
    fn v2_tcp4() {
        let h = header(V2, sa("192.0.2.10:56324"), sa("198.51.100.1:443"));
        let expect: &[u8] = &[
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
            0x0a, // signature
            0x21, // v2, PROXY
            0x11, // TCP over IPv4
            0x00, 0x0c, // 12 bytes follow
            192, 0, 2, 10, // src
            198, 51, 100, 1, // dst
            0xdc, 0x04, // 56324
            0x01, 0xbb, // 443
        ];
        assert_eq!(h, expect);
    }

    #[test]
    fn v2_tcp6() {
        let h = header(V2, sa("[2001:db8::1]:1"), sa("[2001:db8::2]:65535"));
        let mut expect = vec![
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
            0x0a, // signature
            0x21, // v2, PROXY
            0x21, // TCP over IPv6
            0x00, 0x24, // 36 bytes follow
        ];
        expect.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        expect.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        expect.extend_from_slice(&[0x00, 0x01, 0xff, 0xff]);
        assert_eq!(h, expect);
        assert_eq!(h.len(), 16 + 36);
    }

    #[test]
    fn v2_mapped_and_mixed() {
        let h = header(V2, sa("[::ffff:192.0.2.10]:80"), sa("[::ffff:10.0.0.1]:81"));
        assert_eq!(&h[12..16], &[0x21, 0x11, 0x00, 0x0c]);
        assert_eq!(&h[16..], &[192, 0, 2, 10, 10, 0, 0, 1, 0, 80, 0, 81]);
        let h = header(V2, sa("192.0.2.10:80"), sa("[2001:db8::5]:81"));
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10];
        assert_eq!(&h[16..32], &mapped);
        assert_eq!(&h[48..], &[0, 80, 0, 81]);
    }
}

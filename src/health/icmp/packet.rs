//! ICMP echo packets: building requests and reading replies (pure code).
//!
//! What a socket hands back differs by kind ([`Kind`]):
//! - raw IPv4: the IP header first (skip `IHL * 4` bytes), every ICMP
//!   packet of the host, so match the identifier and the sequence;
//! - raw IPv6: no IP header, the kernel computes the checksum;
//! - ping sockets (v4 and v6): no IP header, only this socket's replies, and
//!   the kernel rewrites the identifier, so only the sequence is matched.
//!
//! Every request carries an 8-byte token; a reply must echo it.

/// How the socket was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SOCK_DGRAM` with `IPPROTO_ICMP`/`IPPROTO_ICMPV6` (ping socket).
    Ping,
    /// `SOCK_RAW` (needs CAP_NET_RAW).
    Raw,
}

pub const ECHO_REQUEST_V4: u8 = 8;
pub const ECHO_REPLY_V4: u8 = 0;
pub const ECHO_REQUEST_V6: u8 = 128;
pub const ECHO_REPLY_V6: u8 = 129;

/// ICMP echo header (type, code, checksum, id, seq) plus the token.
pub const REQUEST_LEN: usize = 8 + 8;

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request. For IPv6 the checksum is left 0 (the kernel fills it);
/// for IPv4 it is computed (ping sockets recompute it anyway).
pub fn echo_request(v6: bool, id: u16, seq: u16, token: u64) -> [u8; REQUEST_LEN] {
    let mut p = [0u8; REQUEST_LEN];
    p[0] = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(&token.to_be_bytes());
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The sequence number of `buf` if it is a reply to one of our requests
/// (`id` and `token` as sent); `None` for anything else or anything short.
pub fn parse_reply(v6: bool, kind: Kind, buf: &[u8], id: u16, token: u64) -> Option<u16> {
    let icmp = if kind == Kind::Raw && !v6 {
        skip_ipv4_header(buf)?
    } else {
        buf
    };
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp.len() < REQUEST_LEN || icmp[0] != want || icmp[1] != 0 {
        return None;
    }
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    if kind == Kind::Raw && got_id != id {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&icmp[8..16]);
    if u64::from_be_bytes(t) != token {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// The payload of an IPv4 packet carrying ICMP.
fn skip_ipv4_header(buf: &[u8]) -> Option<&[u8]> {
    let first = *buf.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || buf.len() < ihl || buf.get(9) != Some(&1) {
        return None;
    }
    buf.get(ihl..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_reply(mut req: [u8; REQUEST_LEN], v6: bool) -> Vec<u8> {
        req[0] = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
        req.to_vec()
    }

    fn ipv4(payload: &[u8], ihl_words: u8) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl_words) * 4];
        h[0] = 0x40 | ihl_words;
        h[9] = 1;
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn checksum_matches_rfc1071_examples() {
        // The RFC 1071 example: 0x0001 f203 f4f5 f6f7 sums to 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        let req = echo_request(false, 0x4242, 7, 99);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn v6_requests_leave_the_checksum_to_the_kernel() {
        let req = echo_request(true, 1, 2, 3);
        assert_eq!((req[0], req[2], req[3]), (ECHO_REQUEST_V6, 0, 0));
    }

    #[test]
    fn raw_v4_replies_skip_the_ip_header_and_match_id() {
        let reply = as_reply(echo_request(false, 0x4242, 5, 77), false);
        assert_eq!(
            parse_reply(false, Kind::Raw, &ipv4(&reply, 5), 0x4242, 77),
            Some(5)
        );
        assert_eq!(
            parse_reply(false, Kind::Raw, &ipv4(&reply, 6), 0x4242, 77),
            Some(5)
        );
        assert_eq!(
            parse_reply(false, Kind::Raw, &ipv4(&reply, 5), 0x4243, 77),
            None
        );
        assert_eq!(
            parse_reply(false, Kind::Raw, &ipv4(&reply, 5), 0x4242, 78),
            None
        );
        assert_eq!(
            parse_reply(false, Kind::Raw, &reply, 0x4242, 77),
            None,
            "no header"
        );
        let own_request = ipv4(&echo_request(false, 0x4242, 5, 77), 5);
        assert_eq!(
            parse_reply(false, Kind::Raw, &own_request, 0x4242, 77),
            None
        );
    }

    #[test]
    fn ping_sockets_match_seq_and_token_not_id() {
        let reply = as_reply(echo_request(false, 0x736c, 9, 5), false);
        assert_eq!(parse_reply(false, Kind::Ping, &reply, 1, 5), Some(9));
        let reply6 = as_reply(echo_request(true, 0x736d, 10, 5), true);
        assert_eq!(parse_reply(true, Kind::Ping, &reply6, 1, 5), Some(10));
        assert_eq!(parse_reply(true, Kind::Raw, &reply6, 0x736d, 5), Some(10));
        assert_eq!(
            parse_reply(false, Kind::Ping, &reply6, 1, 5),
            None,
            "wrong family"
        );
    }

    #[test]
    fn malformed_input_never_panics() {
        let reply = ipv4(&as_reply(echo_request(false, 1, 1, 1), false), 5);
        for len in 0..reply.len() {
            for kind in [Kind::Raw, Kind::Ping] {
                for v6 in [false, true] {
                    let _ = parse_reply(v6, kind, &reply[..len], 1, 1);
                }
            }
        }
        assert_eq!(
            parse_reply(false, Kind::Raw, &[0x4f], 1, 1),
            None,
            "IHL past the end"
        );
        assert_eq!(
            parse_reply(false, Kind::Raw, &[0x41; 40], 1, 1),
            None,
            "IHL < 5"
        );
        let mut fuzz = 0x1234_5678_u32;
        for _ in 0..2000 {
            let buf: Vec<u8> = (0..(fuzz % 64))
                .map(|_| {
                    fuzz ^= fuzz << 13;
                    fuzz ^= fuzz >> 17;
                    fuzz ^= fuzz << 5;
                    fuzz as u8
                })
                .collect();
            let _ = parse_reply(false, Kind::Raw, &buf, 1, 1);
            let _ = parse_reply(true, Kind::Ping, &buf, 1, 1);
        }
    }
}

//! Listening addresses that cannot all be bound: two servers, or a server
//! and the API or metrics endpoint, on one port of one transport where the
//! addresses overlap (equal, or one is a wildcard that covers the other).
//! Without this check `-t` passed and the daemon failed at bind time.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::Ctx;
use crate::config::types::{Api, Metrics, Protocol, Server};

/// How every overlap error ends ([`super::super::ConfigError::is_bind_conflict`]).
pub const OVERLAP: &str = "both cannot listen";

/// One listener: the key that sets it, its transport and address.
struct Listener {
    key: String,
    udp: bool,
    addr: SocketAddr,
}

/// An error on the later of every two listeners that overlap.
pub(super) fn check(
    ctx: &mut Ctx,
    api: &Api,
    metrics: &Metrics,
    servers: &BTreeMap<String, Server>,
) {
    let mut all = Vec::new();
    let tcp = |key: &str, addr| Listener {
        key: key.to_string(),
        udp: false,
        addr,
    };
    if api.enabled {
        all.push(tcp("api.bind", api.bind));
    }
    if metrics.enabled {
        all.push(tcp("metrics.bind", metrics.bind));
    }
    for (name, s) in servers {
        all.push(Listener {
            key: format!("servers.{name}.bind"),
            udp: s.protocol == Protocol::Udp,
            addr: s.bind,
        });
    }
    for (i, l) in all.iter().enumerate() {
        if let Some(first) = all[..i]
            .iter()
            .find(|e| e.udp == l.udp && overlap(e.addr, l.addr))
        {
            let proto = if l.udp { "udp" } else { "tcp" };
            ctx.error(
                &l.key,
                format!(
                    "{} overlaps {} ({}, {proto}): {OVERLAP}",
                    l.addr, first.key, first.addr
                ),
            );
        }
    }
}

/// Two binds on one port that the kernel would refuse to hold at once.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() == b.port() && (x == y || covers(x, y) || covers(y, x))
}

/// A wildcard covers its family; `[::]` is bound dual-stack, so it covers all.
fn covers(wild: IpAddr, other: IpAddr) -> bool {
    match wild {
        IpAddr::V4(w) => w.is_unspecified() && other.is_ipv4(),
        IpAddr::V6(w) => w.is_unspecified(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlaps_on_one_port_when_equal_or_covered() {
        assert!(overlap(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(!overlap(a("127.0.0.1:80"), a("127.0.0.1:81")));
        assert!(!overlap(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(overlap(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlap(a("127.0.0.1:80"), a("0.0.0.0:80")));
        assert!(overlap(a("[::]:80"), a("127.0.0.1:80")));
        assert!(overlap(a("[::]:80"), a("[::1]:80")));
        assert!(overlap(a("[::]:80"), a("0.0.0.0:80")));
        assert!(!overlap(a("0.0.0.0:80"), a("[::1]:80")));
        assert!(!overlap(a("127.0.0.1:80"), a("[::1]:80")));
        assert!(overlap(a("[::ffff:127.0.0.1]:80"), a("127.0.0.1:80")));
    }
}

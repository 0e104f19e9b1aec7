use super::*;
use simple_dns::ResourceRecord;
use simple_dns::rdata::{A, AAAA, SRV};

fn reply(
    id: u16,
    rcode: RCODE,
    answers: Vec<RData<'static>>,
    extra: Vec<RData<'static>>,
) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    *p.rcode_mut() = rcode;
    let rr =
        |name: &'static str, d| ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, 60, d);
    for d in answers {
        p.answers.push(rr("_web._tcp.example.test", d));
    }
    for d in extra {
        let owner = if matches!(d, RData::A(_)) {
            "a.example.test"
        } else {
            "b.example.test"
        };
        p.additional_records.push(rr(owner, d));
    }
    p.build_bytes_vec().unwrap()
}

fn srv(target: &'static str, port: u16, priority: u16, weight: u16) -> RData<'static> {
    RData::SRV(SRV {
        priority,
        weight,
        port,
        target: Name::new_unchecked(target),
    })
}

#[test]
fn query_round_trips() {
    let q = query(7, "_web._tcp.example.test", TYPE::SRV).unwrap();
    let p = Packet::parse(&q).unwrap();
    assert_eq!(p.id(), 7);
    assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
    assert_eq!(p.opt().map(|o| o.udp_packet_size), Some(4096));
    assert_eq!(p.questions[0].qname.to_string(), "_web._tcp.example.test");
}

#[test]
fn parses_srv_and_additional_addresses() {
    let bytes = reply(
        9,
        RCODE::NoError,
        vec![
            srv("A.example.test.", 8080, 1, 5),
            srv("b.example.test", 9090, 2, 0),
        ],
        vec![
            RData::A(A {
                address: u32::from(Ipv4Addr::new(127, 0, 0, 2)),
            }),
            RData::AAAA(AAAA {
                address: u128::from(Ipv6Addr::LOCALHOST),
            }),
        ],
    );
    let a = parse(9, &bytes).unwrap();
    assert_eq!(a.srv.len(), 2);
    assert_eq!(a.srv[0].target, "a.example.test");
    let ip = pick(&a.addrs["a.example.test"]).unwrap();
    let s = spec(&a.srv[0], ip);
    assert_eq!(
        (s.key(), s.weight, s.priority, s.sni.as_str()),
        ("127.0.0.2:8080".into(), 5, 1, "a.example.test")
    );
    let s = spec(&a.srv[1], pick(&a.addrs["b.example.test"]).unwrap());
    assert_eq!(s.key(), "[::1]:9090");
}

#[test]
fn error_codes_and_garbage() {
    assert!(
        parse(1, &reply(1, RCODE::NameError, vec![], vec![]))
            .unwrap()
            .srv
            .is_empty()
    );
    assert!(parse(1, &reply(1, RCODE::ServerFailure, vec![], vec![])).is_err());
    assert!(
        parse(2, &reply(1, RCODE::NoError, vec![], vec![])).is_err(),
        "wrong id"
    );
    assert!(parse(1, b"\x00\x01garbage").is_err());
    assert!(parse(1, &[]).is_err());
}

#[test]
fn failed_follow_ups_fail_the_fetch_only_when_no_target_is_left() {
    let record = SrvRecord {
        target: "a.example.test".into(),
        port: 80,
        priority: 1,
        weight: 1,
    };
    let failed = || Some("c.example.test: address lookup failed: refused; skipped".into());
    let mut one = Listing::default();
    one.specs.push(spec(&record, Ipv4Addr::LOCALHOST.into()));
    one.warn(|| failed().unwrap());
    let kept = settle(one, failed()).unwrap();
    assert_eq!(kept.specs.len(), 1);
    assert_eq!(kept.warnings.len(), 1);
    let e = settle(Listing::default(), failed()).unwrap_err();
    assert!(
        e.starts_with("no SRV target gave a backend; c.example.test"),
        "{e}"
    );
    // No follow-up failed: an empty list is an answer, not an error.
    assert!(settle(Listing::default(), None).unwrap().specs.is_empty());
}

/// A DNS server on loopback (udp): the SRV query gets two targets and
/// no additional section, a.example.test's A query 127.0.0.2, and
/// every query about b.example.test no answer at all.
async fn half_silent_server() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Packet::parse(&buf[..n]) else {
                continue;
            };
            let name = q.questions[0].qname.to_string();
            let mut p = Packet::new_reply(q.id());
            let rr = |d| {
                ResourceRecord::new(
                    Name::new_unchecked("_web._tcp.example.test"),
                    CLASS::IN,
                    60,
                    d,
                )
            };
            if name.starts_with("_web") {
                p.answers.push(rr(srv("a.example.test", 8080, 1, 1)));
                p.answers.push(rr(srv("b.example.test", 8080, 1, 1)));
            } else if name.starts_with("a.") && q.questions[0].qtype == QTYPE::TYPE(TYPE::A) {
                let a = RData::A(A {
                    address: u32::from(Ipv4Addr::new(127, 0, 0, 2)),
                });
                p.answers.push(ResourceRecord::new(
                    Name::new_unchecked("a.example.test"),
                    CLASS::IN,
                    60,
                    a,
                ));
            } else if name.starts_with("b.") {
                continue;
            }
            let _ = sock.send_to(&p.build_bytes_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_follow_up_without_answer_skips_only_its_target() {
    let srv = Srv {
        server: half_silent_server().await.to_string(),
        pattern: "_web._tcp.example.test".into(),
        tcp: false,
    };
    let listing = tokio::time::timeout(Duration::from_secs(10), srv.fetch())
        .await
        .expect("bounded by the follow-up timeout")
        .unwrap();
    let keys: Vec<String> = listing.specs.iter().map(BackendSpec::key).collect();
    assert_eq!(keys, ["127.0.0.2:8080"]);
    assert_eq!(
        listing.warnings,
        ["b.example.test: address lookup failed: no answer within 2s; skipped"]
    );
}

#[test]
fn prefers_ipv4() {
    let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
    let v4: IpAddr = Ipv4Addr::LOCALHOST.into();
    assert_eq!(pick(&[v6, v4]), Some(v4));
    assert_eq!(pick(&[v6]), Some(v6));
    assert_eq!(pick(&[]), None);
}

#[test]
fn server_host_port_splits_names_and_literals() {
    for (server, host, port) in [
        ("dns.test:53", "dns.test", 53),
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("[::1]:53", "::1", 53),
        ("::1:53", "::1", 53),
    ] {
        assert_eq!(server_host_port(server), Ok((host, port)), "{server}");
    }
    for bad in [
        "",
        "dns.test",
        ":53",
        "dns.test:0",
        "dns.test:x",
        "[::1:53",
        "[]:53",
        "a:b:53",
    ] {
        let e = server_host_port(bad).unwrap_err();
        assert!(e.starts_with(&format!("srv_lookup_server {bad}: ")), "{e}");
    }
}

/// An IP literal server is used as it is (no lookup).
#[tokio::test]
async fn a_literal_server_is_not_looked_up() {
    for (server, want) in [
        ("127.0.0.1:53", "127.0.0.1:53"),
        ("[::1]:5353", "[::1]:5353"),
    ] {
        let srv = Srv {
            server: server.into(),
            pattern: "_x._tcp.test.".into(),
            tcp: false,
        };
        let addr = srv.resolve_server().await.unwrap();
        assert_eq!(addr, want.parse().unwrap());
    }
}

//! Election through the real binary: strategies, priority, limits, retries,
//! access rules and PROXY headers.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Three greeting backends A, B, C.
fn backends() -> [Backend; 3] {
    [
        Backend::start("A"),
        Backend::start("B"),
        Backend::start("C"),
    ]
}

/// Backend lines with a suffix each (`weight=2`, `priority=1`...).
fn lines(bs: &[Backend], suffixes: &[&str]) -> Vec<String> {
    bs.iter()
        .zip(suffixes)
        .map(|(b, s)| format!("{} {s}", b.line()).trim().to_string())
        .collect()
}

fn plain_lines(bs: &[Backend]) -> Vec<String> {
    bs.iter().map(Backend::line).collect()
}

/// Start betwixt with one server on a fresh port; returns it and the port.
fn start(balance: &str, lines: &[String], extra: &str) -> (Betwixt, u16) {
    let port = free_port();
    let b = Betwixt::start_quiet(&config(port, balance, lines, extra), &[port]);
    (b, port)
}

/// Greetings of `n` sequential connections, counted by backend name.
fn tally(port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(who(port)).or_insert(0) += 1;
    }
    counts
}

fn count(t: &BTreeMap<String, usize>, name: &str) -> usize {
    t.get(name).copied().unwrap_or(0)
}

/// Backend of each source address 127.0.0.2..=127.0.0.(1 + n).
fn mapping(port: u16, n: u8) -> BTreeMap<IpAddr, String> {
    (2..2 + n).map(|i| (lo(i), who_from(lo(i), port))).collect()
}

/// A connection that has been greeted, with the greeting.
fn greeted(port: u16) -> (TcpStream, String) {
    let mut s = connect(port);
    let name = read_line(&mut s);
    (s, name)
}

/// Open a connection and keep retrying (5 s) until it is greeted: slots freed
/// by closed connections are released asynchronously by the proxy.
fn greeted_eventually(port: u16) -> (TcpStream, String) {
    let mut got = None;
    let ok = wait_until(Duration::from_secs(5), || {
        let (s, name) = greeted(port);
        let good = !name.is_empty();
        if good {
            got = Some((s, name));
        }
        good
    });
    assert!(ok, "no connection was greeted within 5 s");
    got.expect("greeted")
}

/// Closing a client cleanly: half-close, wait for the proxy's FIN.
fn close(mut s: TcpStream) {
    let _ = exchange(&mut s, b"");
}

#[test]
fn roundrobin_is_exactly_even() {
    let bs = backends();
    let (_b, port) = start("roundrobin", &plain_lines(&bs), "");
    let t = tally(port, 30);
    for name in ["A", "B", "C"] {
        assert_eq!(count(&t, name), 10, "{t:?}");
    }
}

#[test]
fn weight_shares_follow_weights() {
    let bs = backends();
    let lines = lines(&bs, &["weight=1", "weight=2", "weight=3"]);
    let (_b, port) = start("weight", &lines, "");
    let t = tally(port, 600);
    for (name, want) in [("A", 100), ("B", 200), ("C", 300)] {
        let got = count(&t, name);
        assert!(
            got.abs_diff(want) <= 45,
            "{name}: {got}, want {want}±45: {t:?}"
        );
    }
}

fn check_sticky_and_spread(balance: &str) {
    let bs = backends();
    let (_b, port) = start(balance, &plain_lines(&bs), "");
    let first = who(port);
    assert!(!first.is_empty(), "not greeted");
    for _ in 0..19 {
        assert_eq!(who(port), first, "{balance}: 127.0.0.1 moved");
    }
    let map = mapping(port, 39);
    let again = mapping(port, 39);
    assert_eq!(map, again, "{balance}: a source address moved");
    let used: std::collections::BTreeSet<&String> = map.values().collect();
    assert!(
        used.len() >= 2 && !used.contains(&String::new()),
        "{balance}: 39 addresses should spread: {map:?}"
    );
}

#[test]
fn iphash_is_sticky_per_address() {
    check_sticky_and_spread("iphash");
}

#[test]
fn iphash1_is_sticky_per_address() {
    check_sticky_and_spread("iphash1");
}

#[test]
fn iphash1_keeps_addresses_when_a_backend_is_removed() {
    let bs = backends();
    let port = free_port();
    let b = Betwixt::start_quiet(&config(port, "iphash1", &plain_lines(&bs), ""), &[port]);
    let before = mapping(port, 40);
    // Remove the first backend: index-based hashing would move everyone.
    let removed = &bs[0].name;
    assert!(b.reload(&config(port, "iphash1", &plain_lines(&bs[1..]), "")));
    let after = mapping(port, 40);
    for (ip, old) in &before {
        let new = &after[ip];
        assert!(
            new == "B" || new == "C",
            "{ip} not served after reload: {new:?}"
        );
        if old != removed {
            assert_eq!(
                new, old,
                "{ip} moved from {old} to {new}; before {before:?}"
            );
        }
    }
}

#[test]
fn leastconn_picks_the_least_loaded() {
    let bs = backends();
    let (_b, port) = start("leastconn", &plain_lines(&bs), "");
    let mut held: Vec<(TcpStream, String)> = Vec::new();
    let load =
        |held: &[(TcpStream, String)], name: &str| held.iter().filter(|(_, n)| n == name).count();
    // Six held connections: every new one goes to a least loaded backend.
    for i in 0..6 {
        let min = ["A", "B", "C"]
            .iter()
            .map(|n| load(&held, n))
            .min()
            .unwrap_or(0);
        let (s, name) = greeted(port);
        assert_eq!(
            load(&held, &name),
            min,
            "connection {i} went to {name}, not a least loaded one"
        );
        held.push((s, name));
    }
    // Close both connections on B: the next two must go to B.
    let (on_b, rest): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, n)| n == "B");
    assert_eq!(on_b.len(), 2);
    for (s, _) in on_b {
        close(s);
    }
    // The proxy releases the slot right after passing the FIN on.
    std::thread::sleep(Duration::from_millis(200));
    let mut again = rest;
    for _ in 0..2 {
        let (s, name) = greeted(port);
        assert_eq!(name, "B", "B has 0 or 1 connection, A and C have 2");
        again.push((s, name));
    }
}

#[test]
fn priority_standby_only_when_primaries_fail() {
    let bs = backends();
    let lines = lines(&bs, &["priority=1", "priority=1", "priority=2"]);
    let (_b, port) = start("weight", &lines, "backend_connection_retries = 2\n");
    let t = tally(port, 20);
    assert_eq!(
        count(&t, "C"),
        0,
        "standby used while primaries are up: {t:?}"
    );
    assert_eq!(count(&t, "A") + count(&t, "B"), 20, "{t:?}");
    bs[0].stop_refusing();
    bs[1].stop_refusing();
    let t = tally(port, 10);
    assert_eq!(
        count(&t, "C"),
        10,
        "primaries refuse; standby must serve: {t:?}"
    );
}

#[test]
fn priority_applies_to_roundrobin_too() {
    let bs = backends();
    let lines = lines(&bs, &["priority=2", "priority=1", "priority=1"]);
    let (_b, port) = start("roundrobin", &lines, "");
    let t = tally(port, 20);
    assert_eq!(
        (count(&t, "A"), count(&t, "B"), count(&t, "C")),
        (0, 10, 10),
        "{t:?}"
    );
}

#[test]
fn backend_max_connections_overflows_to_standby() {
    let bs = backends();
    let lines = vec![
        format!("{} priority=1 max_connections=1", bs[0].line()),
        format!("{} priority=2", bs[1].line()),
    ];
    let (_b, port) = start("roundrobin", &lines, "");
    let (held, name) = greeted(port);
    assert_eq!(name, "A");
    for _ in 0..3 {
        assert_eq!(who(port), "B", "A is full; standby B must take it");
    }
    close(held);
    let (_s, name) = greeted_eventually(port);
    // Once A's slot is free again (retry above), the primary is preferred.
    let ok = name == "A" || wait_until(Duration::from_secs(5), || who(port) == "A");
    assert!(ok, "A never preferred again after its connection closed");
}

#[test]
fn server_max_connections_refuses_the_third() {
    let bs = backends();
    let port = free_port();
    let cfg = config(
        port,
        "roundrobin",
        &plain_lines(&bs),
        "max_connections = 2\n",
    )
    .replace("level = \"debug\"", "level = \"info\"");
    let b = Betwixt::start_quiet(&cfg, &[port]);
    let one = greeted_eventually(port);
    let two = greeted_eventually(port);
    for _ in 0..3 {
        let mut third = connect(port);
        assert!(
            closed_without_data(&mut third, Duration::from_secs(3)),
            "third concurrent connection was not closed without a greeting"
        );
    }
    // Said at the default log level, once for a burst.
    let said = b
        .logs()
        .matches("closed: max_connections (2) reached")
        .count();
    assert_eq!(said, 1, "{}", b.logs());
    close(one.0);
    let (_s, name) = greeted_eventually(port);
    assert!(!name.is_empty());
    drop(two);
}

#[test]
fn connect_failure_retries_another_backend() {
    let live = Backend::start("LIVE");
    let dead = format!("127.0.0.1:{}", free_port());
    let (_b, port) = start("roundrobin", &[dead, live.line()], "");
    for i in 0..10 {
        assert_eq!(who(port), "LIVE", "connection {i}");
    }
}

#[test]
fn a_dead_backends_connect_failures_warn_once_per_period() {
    // Without a health check every client elected to a dead backend fails
    // to connect there: one warning, the rest debug lines (and counted).
    let live = Backend::start("LIVE");
    let dead = format!("127.0.0.1:{}", free_port());
    let (b, port) = start("roundrobin", &[dead.clone(), live.line()], "");
    for i in 0..10 {
        assert_eq!(who(port), "LIVE", "connection {i}");
    }
    let failed = format!("connect to {dead} failed");
    let logs = b.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&failed)).collect();
    let warned = lines.iter().filter(|l| l.contains("[WARN]")).count();
    assert_eq!(warned, 1, "{logs}");
    assert!(lines.len() >= 5, "{logs}");
}

#[test]
fn a_failed_connect_is_not_called_no_backend_available() {
    // The only backend refuses: the log says so, not that there was none.
    let dead = format!("127.0.0.1:{}", free_port());
    let (b, port) = start("roundrobin", std::slice::from_ref(&dead), "");
    let mut s = connect(port);
    assert!(closed_without_data(&mut s, Duration::from_secs(3)));
    let failed = format!("connect to {dead} failed");
    assert!(b.wait_log(&failed, Duration::from_secs(5)), "{}", b.logs());
    assert!(!b.logs().contains("no backend available"), "{}", b.logs());
}

#[test]
fn access_rules_allow_only_listed_sources() {
    let bs = backends();
    let extra = "[servers.test.access]\ndefault = \"deny\"\nrules = [\"allow 127.0.0.2\"]\n";
    let (_b, port) = start("roundrobin", &plain_lines(&bs), extra);
    let mut denied = connect_from(lo(1), port);
    assert!(
        closed_without_data(&mut denied, Duration::from_secs(3)),
        "127.0.0.1 must be refused"
    );
    let mut other = connect_from(lo(3), port);
    assert!(
        closed_without_data(&mut other, Duration::from_secs(3)),
        "127.0.0.3 must be refused"
    );
    for _ in 0..3 {
        assert!(
            !who_from(lo(2), port).is_empty(),
            "127.0.0.2 must be served"
        );
    }
}

/// A raw backend: accepts one connection and sends its first `max` bytes
/// (or fewer, up to a CRLF when `line`) over the channel.
fn recording_backend(
    max: usize,
    line: bool,
) -> (TcpListener, mpsc::Receiver<Vec<u8>>, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    let l = listener.try_clone().expect("clone");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while got.len() < max && !(line && got.ends_with(b"\r\n")) {
                match s.read(&mut buf[..(max - got.len()).min(256)]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(got);
        }
    });
    (listener, rx, addr)
}

fn proxy_header(version: &str, max: usize) -> (Vec<u8>, u16, u16) {
    proxy_header_at(version, max, "127.0.0.1")
}

/// PROXY header seen by the backend for a client of `host` (betwixt binds
/// `host:PORT`); returns it with the client's and betwixt's ports.
fn proxy_header_at(version: &str, max: usize, host: &str) -> (Vec<u8>, u16, u16) {
    let (_l, rx, addr) = recording_backend(max, version == "1");
    let extra = format!("[servers.test.proxy_protocol]\nversion = \"{version}\"\n");
    let port = free_port();
    let ip: IpAddr = host.parse().expect("ip");
    let bind = SocketAddr::new(ip, port).to_string();
    let cfg = config(port, "roundrobin", &[addr.to_string()], &extra)
        .replace(&format!("127.0.0.1:{port}"), &bind);
    let mut bx = Betwixt::spawn(&cfg, "betwixt.toml", &[], |_| {});
    bx.wait_listening(&[bind]);
    let client = connect_addr(SocketAddr::new(ip, port));
    let client_port = client.local_addr().expect("local").port();
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("backend saw no connection");
    drop(client);
    drop(bx);
    (got, client_port, port)
}

#[test]
fn proxy_protocol_v1_header() {
    let (got, client_port, port) = proxy_header("1", 108);
    let want = format!("PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\n");
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn proxy_protocol_v2_header() {
    let (got, client_port, port) = proxy_header("2", 28);
    let sig = b"\r\n\r\n\0\r\nQUIT\n";
    assert!(got.len() >= 28, "short v2 header: {got:?}");
    assert_eq!(&got[..12], sig, "signature");
    assert_eq!(
        &got[12..14],
        &[0x21, 0x11],
        "version/command, family/protocol"
    );
    assert_eq!(&got[14..16], &12u16.to_be_bytes(), "address length");
    assert_eq!(&got[16..20], &[127, 0, 0, 1], "source address");
    assert_eq!(&got[20..24], &[127, 0, 0, 1], "destination address");
    assert_eq!(&got[24..26], &client_port.to_be_bytes(), "source port");
    assert_eq!(&got[26..28], &port.to_be_bytes(), "destination port");
}

#[test]
fn proxy_protocol_v1_ipv6_client() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIP proxy_protocol_v1_ipv6_client: cannot bind [::1] on this host");
        return;
    }
    let (got, client_port, port) = proxy_header_at("1", 108, "::1");
    let want = format!("PROXY TCP6 ::1 ::1 {client_port} {port}\r\n");
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn no_backend_available_is_logged_once_per_period_not_per_connection() {
    let bs = backends();
    let lines = vec![format!("{} max_connections=1", bs[0].line())];
    let port = free_port();
    let b = Betwixt::start(&config(port, "roundrobin", &lines, ""), &[port]);
    let (held, name) = greeted_eventually(port);
    assert_eq!(name, "A");
    // A is full: each of these is refused, and only the first is logged.
    for _ in 0..10 {
        let mut s = connect(port);
        assert!(closed_without_data(&mut s, Duration::from_secs(3)));
    }
    let logged = b.logs().matches("no backend available").count();
    assert_eq!(logged, 1, "{}", b.logs());
    assert!(!b.logs().contains("(sni None)"), "{}", b.logs());
    close(held);
}

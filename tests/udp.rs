//! UDP sessions through the real binary: echo servers, dnsmasq, limits, fds.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A UDP echo backend: replies `NAME:payload`, records each source address.
/// A `PING` datagram is a health probe: answered `PONG` while `healthy`,
/// else ignored (and not recorded).
struct Echo {
    addr: SocketAddr,
    sources: Arc<Mutex<Vec<SocketAddr>>>,
    healthy: Arc<AtomicBool>,
}

impl Echo {
    fn start(name: &str, reply: bool) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let sources = Arc::new(Mutex::new(Vec::new()));
        let healthy = Arc::new(AtomicBool::new(true));
        let (seen, name) = (Arc::clone(&sources), name.to_string());
        let well = Arc::clone(&healthy);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if &buf[..n] == b"PING" {
                    if well.load(Ordering::Relaxed) {
                        let _ = sock.send_to(b"PONG", from);
                    }
                    continue;
                }
                seen.lock().unwrap().push(from);
                if reply {
                    let mut out = format!("{name}:").into_bytes();
                    out.extend(&buf[..n]);
                    let _ = sock.send_to(&out, from);
                }
            }
        });
        Self {
            addr,
            sources,
            healthy,
        }
    }

    fn sources(&self) -> Vec<SocketAddr> {
        self.sources.lock().unwrap().clone()
    }
}

fn udp_config(port: u16, balance: &str, backends: &[&Echo], extra: &str) -> String {
    let lines: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    config(
        port,
        balance,
        &lines,
        &format!("protocol = \"udp\"\n{extra}"),
    )
}

/// betwixt on a free port in front of `backends`; `extra` adds server keys.
fn start(balance: &str, backends: &[&Echo], extra: &str) -> (Betwixt, u16) {
    let port = free_port();
    let cfg = udp_config(port, balance, backends, extra);
    (Betwixt::start_quiet(&cfg, &[port]), port)
}

/// betwixt (roundrobin) in front of one replying echo backend named `a`.
fn start_one_echo(extra: &str) -> (Echo, Betwixt, u16) {
    let a = Echo::start("a", true);
    let (bx, port) = start("roundrobin", &[&a], extra);
    (a, bx, port)
}

/// Whether betwixt logs `what` within 3 s.
fn logged(bx: &Betwixt, what: &str) -> bool {
    wait_until(Duration::from_secs(3), || bx.logs().contains(what))
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Send `msg` to betwixt and return (reply, the address it came from).
fn ask(s: &UdpSocket, port: u16, msg: &str) -> Option<(String, SocketAddr)> {
    s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

#[test]
fn a_session_sticks_to_its_backend_and_replies_come_from_the_bind_address() {
    let (a, b) = (Echo::start("a", true), Echo::start("b", true));
    let (_bx, port) = start("roundrobin", &[&a, &b], "client_idle_timeout = \"5s\"\n");
    let mut names = HashSet::new();
    for _ in 0..4 {
        let c = client();
        let (first, from) = ask(&c, port, "x").expect("reply");
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)));
        for i in 0..5 {
            let (again, _) =
                ask(&c, port, &format!("m{i}")).unwrap_or_else(|| panic!("{}", _bx.logs()));
            assert_eq!(again.split(':').next(), first.split(':').next());
            assert!(again.ends_with(&format!("m{i}")));
        }
        names.insert(first.split(':').next().unwrap().to_string());
    }
    assert_eq!(
        names.len(),
        2,
        "roundrobin over sessions used both backends"
    );
    // Each session used one backend-facing port for all its datagrams.
    let ports: HashSet<_> = a.sources().into_iter().chain(b.sources()).collect();
    assert_eq!(ports.len(), 4);
}

#[test]
fn max_requests_one_balances_every_datagram_and_still_relays_replies() {
    let (a, b) = (Echo::start("a", true), Echo::start("b", true));
    let (_bx, port) = start(
        "roundrobin",
        &[&a, &b],
        "[servers.test.udp]\nmax_requests = 1\n",
    );
    let c = client();
    let got: Vec<String> = (0..4)
        .map(|i| ask(&c, port, &i.to_string()).expect("reply").0)
        .collect();
    let names: Vec<&str> = got.iter().map(|g| g.split(':').next().unwrap()).collect();
    assert_ne!(names[0], names[1], "{got:?}");
    assert_eq!(names[0], names[2], "{got:?}");
}

#[test]
fn max_requests_n_starts_a_new_session_after_n() {
    let (a, _bx, port) =
        start_one_echo("client_idle_timeout = \"5s\"\n[servers.test.udp]\nmax_requests = 3\n");
    let c = client();
    for i in 0..7 {
        ask(&c, port, &i.to_string()).expect("reply");
    }
    let src = a.sources();
    assert_eq!(src.len(), 7);
    assert!(src[0] == src[1] && src[1] == src[2], "{src:?}");
    assert!(src[3] == src[4] && src[4] == src[5], "{src:?}");
    assert!(src[2] != src[3] && src[5] != src[6], "{src:?}");
}

#[test]
fn max_responses_ends_the_session_after_that_many_replies() {
    let (a, bx, port) =
        start_one_echo("client_idle_timeout = \"5s\"\n[servers.test.udp]\nmax_responses = 2\n");
    let c = client();
    ask(&c, port, "1").expect("reply");
    ask(&c, port, "2").expect("reply");
    assert!(logged(&bx, "udp session ended (max_responses)"));
    ask(&c, port, "3").expect("reply");
    let src = a.sources();
    assert_eq!(src[0], src[1]);
    assert_ne!(src[1], src[2]);
}

/// A client that sends several requests from one port before the first
/// reply (glibc's resolver sends its A and AAAA queries so) gets every reply
/// with `max_responses = 1`: the session takes no new request after its
/// first reply but still relays the replies it owes; the next request
/// starts a new session.
#[test]
fn max_responses_still_relays_replies_to_requests_already_sent() {
    let (a, bx, port) =
        start_one_echo("backend_idle_timeout = \"2s\"\n[servers.test.udp]\nmax_responses = 1\n");
    let c = client();
    for burst in [2, 5] {
        for i in 0..burst {
            c.send_to(format!("q{i}").as_bytes(), ("127.0.0.1", port))
                .unwrap();
        }
        let mut got = HashSet::new();
        let mut buf = [0u8; 64];
        while got.len() < burst {
            let Ok(n) = c.recv(&mut buf) else { break };
            got.insert(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got.len(), burst, "{got:?}\n{}", bx.logs());
    }
    assert!(logged(&bx, "udp session ended (max_responses)"));
    let (reply, _) = ask(&c, port, "after").expect("reply");
    assert_eq!(reply, "a:after");
    let src = a.sources();
    assert_ne!(
        src[0],
        src[src.len() - 1],
        "a new session after max_responses"
    );
}

#[test]
fn idle_timeouts_end_sessions() {
    let (a, bx, port) = start_one_echo("client_idle_timeout = \"300ms\"\n");
    let c = client();
    ask(&c, port, "1").expect("reply");
    assert!(logged(&bx, "udp session ended (client_idle_timeout)"));
    ask(&c, port, "2").expect("reply");
    let src = a.sources();
    assert_ne!(src[0], src[1], "a new session after the idle timeout");
    drop(bx);

    let mute = Echo::start("mute", false);
    let (bx, port) = start("roundrobin", &[&mute], "backend_idle_timeout = \"300ms\"\n");
    let c = client();
    c.send_to(b"hello?", ("127.0.0.1", port)).unwrap();
    assert!(
        logged(&bx, "udp session ended (backend_idle_timeout)"),
        "{}",
        bx.logs()
    );
}

/// A backend port with nothing listening answers with ICMP port unreachable:
/// that ends the session at once (not at `client_idle_timeout`), so the
/// client's retry from the same port is balanced again, to a live backend.
#[test]
fn icmp_port_unreachable_ends_the_session_and_the_retry_is_rebalanced() {
    let live = Echo::start("live", true);
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let port = free_port();
    let lines = [live.addr.to_string(), dead.to_string()];
    let cfg = config(
        port,
        "roundrobin",
        &lines,
        "protocol = \"udp\"\nclient_idle_timeout = \"30s\"\n",
    );
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    // Roundrobin: at least one of two clients lands on the dead backend.
    let mut rebalanced = 0;
    for _ in 0..2 {
        let c = client();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if ask(&c, port, "1").is_some() {
            continue;
        }
        assert!(
            logged(&bx, "udp session ended (backend error)"),
            "{}",
            bx.logs()
        );
        let (reply, _) = ask(&c, port, "2").unwrap_or_else(|| panic!("{}", bx.logs()));
        assert_eq!(reply, "live:2");
        rebalanced += 1;
    }
    assert!(rebalanced >= 1, "{}", bx.logs());
}

#[test]
fn access_rules_apply_to_every_datagram() {
    let (a, _bx, port) = start_one_echo(
        "client_idle_timeout = \"5s\"\n[servers.test.access]\ndefault = \"deny\"\nrules = [\"allow 127.0.0.2\"]\n",
    );
    let denied = client();
    denied
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(ask(&denied, port, "no").is_none());
    let allowed = UdpSocket::bind("127.0.0.2:0").unwrap();
    allowed
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert!(ask(&allowed, port, "yes").is_some());
    assert_eq!(a.sources().len(), 1);
}

#[test]
fn the_session_cap_refuses_new_clients_beyond_it() {
    let (_a, bx, port) =
        start_one_echo("client_idle_timeout = \"10s\"\n[servers.test.udp]\nmax_sessions = 5\n");
    let clients: Vec<UdpSocket> = (0..8).map(|_| client()).collect();
    let mut answered = 0;
    for c in &clients {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        answered += usize::from(ask(c, port, "hi").is_some());
    }
    assert_eq!(answered, 5, "{}", bx.logs());
    assert!(bx.logs().contains("dropping new clients"));
    // Sessions of admitted clients keep working.
    assert!(ask(&clients[0], port, "again").is_some());
}

#[test]
fn ten_thousand_client_ports_under_a_1024_descriptor_limit() {
    let a = Echo::start("a", true);
    let port = free_port();
    let cfg = udp_config(
        port,
        "roundrobin",
        &[&a],
        "client_idle_timeout = \"10s\"\n[servers.test.udp]\nmax_responses = 1\n",
    )
    .replace("level = \"debug\"", "level = \"info\"");
    let bx = Betwixt::start_limited(&cfg, &[port], 1024);
    let mut ok = 0;
    for _batch in 0..40 {
        let socks: Vec<UdpSocket> = (0..250)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &socks {
            s.send_to(b"q", ("127.0.0.1", port)).unwrap();
        }
        // Collect replies without blocking per socket: the batch is bounded at 3 s.
        let mut pending: Vec<&UdpSocket> = socks.iter().collect();
        for s in &pending {
            s.set_nonblocking(true).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !pending.is_empty() && std::time::Instant::now() < deadline {
            pending.retain(|s| {
                let mut buf = [0u8; 64];
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        ok += usize::from(&buf[..n] == b"a:q");
                        false
                    }
                    Err(_) => true,
                }
            });
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let logs = bx.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(ok >= 9_900, "{ok} of 10000 answered\n{logs}");
    let distinct: HashSet<_> = a.sources().into_iter().collect();
    assert!(distinct.len() > 100);
    assert!(ask(&client(), port, "still").is_some());
}

/// Kills dnsmasq when the test ends.
struct Dnsmasq(std::process::Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start dnsmasq on a free loopback port with one host record; `None` if it
/// does not answer a query within 3 s (it exits when the port was taken).
fn start_dnsmasq(_attempt: i32) -> Option<(Dnsmasq, u16)> {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .ok()?
        .port();
    let child = std::process::Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .args(["--listen-address=127.0.0.1", "--user=root", "--pid-file="])
        .arg(format!("--port={port}"))
        .arg("--host-record=svc.test,198.18.0.7")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut d = Dnsmasq(child);
    let c = client();
    c.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    let answered = wait_until(Duration::from_secs(3), || {
        if let Ok(Some(_)) = d.0.try_wait() {
            return true; // exited: give up on this port
        }
        let _ = c.send_to(&dns_query("svc.test"), ("127.0.0.1", port));
        let mut buf = [0u8; 512];
        c.recv_from(&mut buf).is_ok()
    });
    (answered && matches!(d.0.try_wait(), Ok(None))).then_some((d, port))
}

#[test]
fn dns_through_betwixt_to_dnsmasq() {
    if std::process::Command::new("dnsmasq")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: dnsmasq is not installed");
        return;
    }
    // The port is free when picked, but another test may take it before
    // dnsmasq binds it: start again on a new port unless dnsmasq answers.
    let (_guard, dns_port) = (0..3)
        .find_map(start_dnsmasq)
        .expect("dnsmasq did not answer on any of 3 ports");
    let port = free_port();
    let cfg = config(
        port,
        "iphash",
        &[format!("127.0.0.1:{dns_port}")],
        "protocol = \"udp\"\nbackend_idle_timeout = \"2s\"\n[servers.test.udp]\nmax_responses = 1\n",
    );
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    let c = client();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answer = None;
    wait_until(Duration::from_secs(5), || {
        let _ = c.send_to(&dns_query("svc.test"), ("127.0.0.1", port));
        let mut buf = [0u8; 512];
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            answer = Some(buf[..n].to_vec());
        }
        answer.is_some()
    });
    let Some(answer) = answer else {
        panic!("no DNS answer through betwixt; its log:\n{}", bx.logs());
    };
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    assert_eq!(&answer[6..8], &[0, 1], "one answer record");
    assert!(answer.ends_with(&[198, 18, 0, 7]), "{answer:?}");
}

/// Start betwixt with the test server bound on `bind` (a wildcard address).
fn start_on_wildcard(bind: &str, port: u16, backend: &Echo) -> Betwixt {
    let cfg = udp_config(
        port,
        "roundrobin",
        &[backend],
        "client_idle_timeout = \"5s\"\n",
    )
    .replace(
        &format!("bind = \"127.0.0.1:{port}\""),
        &format!("bind = \"{bind}\""),
    );
    let mut bx = Betwixt::spawn(&cfg, "betwixt.toml", &[], |_| {});
    bx.wait_listening(&[bind.to_string()]);
    bx
}

/// From a client bound on `from`, send to `to` and return the reply's source.
fn reply_source(from: &str, to: SocketAddr) -> SocketAddr {
    let c = UdpSocket::bind(from).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send_to(b"who", to).unwrap();
    let mut buf = [0u8; 64];
    let (n, src) = c.recv_from(&mut buf).expect("a reply");
    assert_eq!(&buf[..n], b"a:who");
    src
}

#[test]
fn on_a_wildcard_bind_replies_come_from_the_address_the_client_contacted() {
    let a = Echo::start("a", true);
    let port = free_port();
    let bx = start_on_wildcard(&format!("0.0.0.0:{port}"), port, &a);
    for to in ["127.0.0.2", "127.0.0.1", "127.0.0.3"] {
        let to = SocketAddr::new(to.parse().unwrap(), port);
        assert_eq!(reply_source("127.0.0.1:0", to), to, "{}", bx.logs());
    }
    // From another client address too.
    let to = SocketAddr::from(([127, 0, 0, 4], port));
    assert_eq!(reply_source("127.0.0.5:0", to), to);

    // One client socket talking to two of the host's addresses: each reply
    // comes from the address it went to (two sessions, not one).
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for to in ["127.0.0.6", "127.0.0.7", "127.0.0.6", "127.0.0.7"] {
        let to = SocketAddr::new(to.parse().unwrap(), port);
        c.send_to(b"who", to).unwrap();
        let mut buf = [0u8; 64];
        let (n, src) = c.recv_from(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], b"a:who");
        assert_eq!(src, to, "{}", bx.logs());
    }
}

#[test]
fn on_a_dual_stack_wildcard_bind_replies_come_from_the_contacted_v4_or_v6_address() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let a = Echo::start("a", true);
    let port = free_port();
    let bx = start_on_wildcard(&format!("[::]:{port}"), port, &a);
    let to = SocketAddr::from(([127, 0, 0, 2], port));
    assert_eq!(reply_source("127.0.0.1:0", to), to, "{}", bx.logs());
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(reply_source("[::1]:0", to), to, "{}", bx.logs());
}

/// The backend names that `n` new client sessions reached. The client
/// sockets go into `held` and stay open: a freed ephemeral port can come
/// back for a later client, which would then reuse an old session (sessions
/// are keyed by client address and contacted address) instead of starting a
/// new one.
fn session_backends(port: u16, n: usize, held: &mut Vec<UdpSocket>) -> Vec<String> {
    (0..n)
        .map(|_| {
            let c = client();
            let (reply, _) = ask(&c, port, "hi").expect("reply");
            held.push(c);
            reply.split(':').next().unwrap_or_default().to_string()
        })
        .collect()
}

/// With health check `hc` on a udp server over backends a and b: `sick(b,
/// true)` makes b fail its check, after which new sessions all go to a;
/// `sick(b, false)` brings it back.
fn new_sessions_avoid_a_backend_failing_its_check(hc: &str, sick: impl Fn(&Echo, bool)) {
    let (a, b) = (Echo::start("a", true), Echo::start("b", true));
    let port = free_port();
    let cfg = format!(
        "{}\n[servers.test.healthcheck]\n{hc}\nfails = 1\npasses = 1\n",
        udp_config(
            port,
            "roundrobin",
            &[&a, &b],
            "client_idle_timeout = \"5s\"\n"
        )
    );
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    let (down, up) = (
        format!("backend {} is down", b.addr),
        format!("backend {} is up", b.addr),
    );
    let mut held = Vec::new();
    let got = session_backends(port, 4, &mut held);
    assert!(got.contains(&"b".to_string()), "{got:?}\n{}", bx.logs());
    sick(&b, true);
    assert!(
        wait_until(Duration::from_secs(5), || bx.logs().contains(&down)),
        "{}",
        bx.logs()
    );
    let before = b.sources().len();
    let got = session_backends(port, 6, &mut held);
    assert!(got.iter().all(|n| n == "a"), "{got:?}\n{}", bx.logs());
    assert_eq!(b.sources().len(), before, "b got no datagram");
    sick(&b, false);
    assert!(
        wait_until(Duration::from_secs(5), || bx.logs().contains(&up)),
        "{}",
        bx.logs()
    );
    let mut held = Vec::new();
    let got = session_backends(port, 4, &mut held);
    assert!(got.contains(&"b".to_string()), "{got:?}\n{}", bx.logs());
}

#[test]
fn a_udp_backend_that_stops_answering_udp_probes_gets_no_new_session() {
    new_sessions_avoid_a_backend_failing_its_check(
        "kind = \"probe\"\nprobe_protocol = \"udp\"\nprobe_send = 'PING'\nprobe_recv = 'PONG'\n\
         interval = \"100ms\"\ntimeout = \"80ms\"",
        |b, sick| b.healthy.store(!sick, Ordering::Relaxed),
    );
}

#[test]
fn a_udp_backend_failing_its_exec_check_gets_no_new_session() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cmd = dir.path().join("check");
    // "$2" is the backend's port: the check prints the file named after it
    // ("1" when absent).
    std::fs::write(
        &cmd,
        format!(
            "#!/bin/sh\ncat {0}/\"$2\" 2>/dev/null || echo 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hc = format!(
        "kind = \"exec\"\nexec_command = \"{}\"\nexec_expected_positive_output = \"1\"\n\
         exec_expected_negative_output = \"0\"\ninterval = \"300ms\"\ntimeout = \"250ms\"",
        cmd.display()
    );
    let flag = dir.path().to_path_buf();
    new_sessions_avoid_a_backend_failing_its_check(&hc, |b, sick| {
        let path = flag.join(b.addr.port().to_string());
        std::fs::write(path, if sick { "0" } else { "1" }).unwrap();
    });
}

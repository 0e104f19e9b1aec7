//! Health checks wired into balancing, through the real binary: detection
//! time, recovery, flapping, no overlapping checks, reload, on_down.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn hc_config(port: u16, balance: &str, lines: &[String], server_extra: &str, hc: &str) -> String {
    format!(
        "{}\n[servers.test.healthcheck]\n{hc}\n",
        config(port, balance, lines, server_extra)
    )
}

fn down_line(key: &str) -> String {
    format!("backend {key} is down")
}

fn up_line(key: &str) -> String {
    format!("backend {key} is up")
}

/// Wait until the log contains `needle` `n` times; panic with the log if not.
fn wait_log(b: &Betwixt, needle: &str, n: usize, limit: Duration) {
    let ok = wait_until(limit, || b.logs().matches(needle).count() >= n);
    assert!(ok, "no {n}x {needle:?} within {limit:?}:\n{}", b.logs());
}

/// Exchange a line on an open relayed connection.
fn ping_pong(s: &mut TcpStream, reader: &mut BufReader<TcpStream>, i: usize) {
    let msg = format!("msg {i}\n");
    s.write_all(msg.as_bytes()).expect("stream write");
    let mut line = String::new();
    reader.read_line(&mut line).expect("stream read");
    assert_eq!(line, msg, "stream to the healthy backend broke");
}

#[test]
fn dead_backend_is_detected_in_time_skipped_and_taken_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let port = free_port();
    let (interval, timeout, fails) = (200u64, 100u64, 2u64);
    let hc = format!(
        "kind = \"ping\"\ninterval = \"{interval}ms\"\ntimeout = \"{timeout}ms\"\nfails = {fails}\npasses = 1\n"
    );
    let cfg = hc_config(port, "roundrobin", &[a.line(), b.line()], "", &hc);
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    let names: Vec<String> = (0..4).map(|_| who(port)).collect();
    assert!(names.contains(&"a".into()) && names.contains(&"b".into()));

    // A long-lived stream to b keeps flowing through everything below.
    let mut stream = connect(port);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    if greeting.trim() != "b" {
        stream = connect(port);
        reader = BufReader::new(stream.try_clone().expect("clone"));
        greeting.clear();
        reader.read_line(&mut greeting).expect("greeting");
    }
    assert_eq!(greeting.trim(), "b");
    ping_pong(&mut stream, &mut reader, 0);

    let key = a.line();
    a.stop_refusing();
    let died = Instant::now();
    let limit = Duration::from_millis(fails * interval + timeout);
    let mut i = 1;
    let detected = wait_until(limit + Duration::from_secs(2), || {
        ping_pong(&mut stream, &mut reader, i);
        i += 1;
        bx.logs().contains(&down_line(&key))
    });
    let took = died.elapsed();
    assert!(detected, "never detected:\n{}", bx.logs());
    // Scheduling slack for a loaded 2-core CI box.
    assert!(
        took <= limit + Duration::from_millis(300),
        "detected after {took:?}, bound {limit:?}"
    );
    assert!(bx.logs().contains("(refused: connect"), "{}", bx.logs());

    // After detection no new connection is sent to the dead backend.
    let failed = format!("connect to {key} failed");
    let before = bx.logs().matches(&failed).count();
    for _ in 0..20 {
        assert_eq!(who(port), "b");
    }
    assert_eq!(bx.logs().matches(&failed).count(), before, "{}", bx.logs());

    // Restarted on the same port: taken back without a restart of betwixt.
    let _a2 = Backend::start_at("a", a.addr);
    wait_log(&bx, &up_line(&key), 1, Duration::from_secs(5));
    let names: Vec<String> = (0..4).map(|_| who(port)).collect();
    assert!(names.contains(&"a".into()), "{names:?}");
    ping_pong(&mut stream, &mut reader, i);
}

#[test]
fn initially_unhealthy_backend_gets_traffic_after_the_first_check_which_runs_at_once() {
    let a = Backend::start("a");
    let port = free_port();
    let hc =
        "kind = \"ping\"\ninterval = \"5s\"\ntimeout = \"1s\"\ninitial_status = \"unhealthy\"\n";
    let cfg = hc_config(port, "roundrobin", &[a.line()], "", hc);
    let started = Instant::now();
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    wait_log(&bx, &up_line(&a.line()), 1, Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for an interval"
    );
    assert_eq!(who(port), "a");
}

/// A TCP server answering each connection with the next of `replies`
/// (cycling), and counting connections and the most open at once.
struct ProbeServer {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
    starts: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl ProbeServer {
    fn start(replies: &'static [&'static str], delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, o, m, st, s) = (
            Arc::clone(&conns),
            Arc::clone(&open),
            Arc::clone(&max_open),
            Arc::clone(&starts),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                st.lock().expect("lock").push(Instant::now());
                let n = c.fetch_add(1, Ordering::SeqCst);
                let now_open = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now_open, Ordering::SeqCst);
                let o = Arc::clone(&o);
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 5];
                    let _ = stream.read_exact(&mut buf);
                    std::thread::sleep(delay);
                    let _ = stream.write_all(replies[n % replies.len()].as_bytes());
                    let _ = stream.read(&mut buf);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            conns,
            max_open,
            starts,
            stop,
        }
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn probe_hc(interval_ms: u64, timeout_ms: u64, fails: u32) -> String {
    format!(
        "kind = \"probe\"\nprobe_protocol = \"tcp\"\nprobe_send = 'PING\\n'\nprobe_recv = 'OK'\ninterval = \"{interval_ms}ms\"\ntimeout = \"{timeout_ms}ms\"\nfails = {fails}\npasses = 1\n"
    )
}

#[test]
fn backend_flapping_every_other_probe_is_never_marked_down_with_fails_2() {
    let flappy = ProbeServer::start(&["OK", "NO"], Duration::ZERO);
    let strict = ProbeServer::start(&["OK", "NO"], Duration::ZERO);
    let (p1, p2) = (free_port(), free_port());
    let server = |name: &str, port: u16, addr: SocketAddr, fails: u32| {
        format!(
            "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [\"{addr}\"]\n[servers.{name}.healthcheck]\n{}\n",
            probe_hc(50, 40, fails)
        )
    };
    let cfg = format!(
        "[logging]\nlevel = \"info\"\n{}{}",
        server("flappy", p1, flappy.addr, 2),
        server("strict", p2, strict.addr, 1)
    );
    let bx = Betwixt::start_quiet(&cfg, &[p1, p2]);
    // The control flaps with fails = 1: it must go down, or the probe
    // replies are not alternating and this test proves nothing.
    wait_log(
        &bx,
        &down_line(&strict.addr.to_string()),
        1,
        Duration::from_secs(5),
    );
    let enough = wait_until(Duration::from_secs(10), || {
        flappy.conns.load(Ordering::SeqCst) >= 30
    });
    assert!(
        enough,
        "too few probes: {}",
        flappy.conns.load(Ordering::SeqCst)
    );
    let logs = bx.logs();
    assert!(
        !logs.contains(&down_line(&flappy.addr.to_string())),
        "{logs}"
    );
    assert!(
        logs.contains("probe_mismatch"),
        "no mismatch recorded:\n{logs}"
    );
}

#[test]
fn checks_of_one_target_never_overlap_and_a_slow_check_delays_the_next() {
    // Each reply takes 120 ms; interval 100 ms: a ticker would overlap them.
    let slow = ProbeServer::start(&["OK"], Duration::from_millis(120));
    let port = free_port();
    let cfg = hc_config(
        port,
        "roundrobin",
        &[slow.addr.to_string()],
        "",
        &probe_hc(100, 90, 100),
    );
    // timeout 90 ms < 120 ms: every check times out, the next starts an
    // interval after it ended.
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    let enough = wait_until(Duration::from_secs(10), || {
        slow.conns.load(Ordering::SeqCst) >= 8
    });
    assert!(enough, "{}", bx.logs());
    assert_eq!(slow.max_open.load(Ordering::SeqCst), 1, "checks overlapped");
    let starts = slow.starts.lock().expect("lock").clone();
    for w in starts.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= Duration::from_millis(170), "checks {gap:?} apart");
    }
    drop(bx);
}

#[test]
fn health_survives_a_reload_for_backends_that_did_not_change() {
    let b = Backend::start("b");
    let dead = free_port();
    let dead_key = format!("127.0.0.1:{dead}");
    let port = free_port();
    let hc = "kind = \"ping\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\n";
    let cfg = hc_config(port, "roundrobin", &[dead_key.clone(), b.line()], "", hc);
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    wait_log(&bx, &down_line(&dead_key), 1, Duration::from_secs(5));
    // Same servers and check, another max_connections: the plan is rebuilt.
    let cfg2 = hc_config(
        port,
        "roundrobin",
        &[dead_key.clone(), b.line()],
        "max_connections = 500\n",
        hc,
    );
    assert!(bx.reload(&cfg2));
    let failed = format!("connect to {dead_key} failed");
    let before = bx.logs().matches(&failed).count();
    for _ in 0..10 {
        assert_eq!(who(port), "b");
    }
    assert_eq!(bx.logs().matches(&failed).count(), before, "{}", bx.logs());
    assert_eq!(bx.logs().matches(&down_line(&dead_key)).count(), 1);
}

/// A listener used only as a health port; dropping it fails the checks.
fn health_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().expect("addr").port();
    (l, p)
}

fn open_stream(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(port);
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut greeting = String::new();
    r.read_line(&mut greeting).expect("greeting");
    (s, r)
}

#[test]
fn on_down_close_ends_open_connections_and_keep_does_not() {
    let b = Backend::start("b");
    let (close_health, close_hp) = health_port();
    let (keep_health, keep_hp) = health_port();
    let (pc, pk) = (free_port(), free_port());
    let server = |name: &str, port: u16, hp: u16, on_down: &str| {
        format!(
            "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n[servers.{name}.healthcheck]\nkind = \"ping\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nport = {hp}\non_down = \"{on_down}\"\n",
            b.line()
        )
    };
    let cfg = format!(
        "[logging]\nlevel = \"info\"\n{}{}",
        server("closing", pc, close_hp, "close"),
        server("keeping", pk, keep_hp, "keep")
    );
    let bx = Betwixt::start_quiet(&cfg, &[pc, pk]);
    let (mut cs, mut cr) = open_stream(pc);
    let (mut ks, mut kr) = open_stream(pk);
    ping_pong(&mut cs, &mut cr, 0);
    drop(close_health);
    drop(keep_health);
    wait_log(&bx, &down_line(&b.line()), 2, Duration::from_secs(5));
    // The closing server's connection ends (EOF or reset) soon after.
    let mut rest = Vec::new();
    let _ = cs.set_read_timeout(Some(Duration::from_secs(3)));
    let started = Instant::now();
    let _ = cr.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "not closed"
    );
    // The keeping server's connection still relays.
    ping_pong(&mut ks, &mut kr, 1);
}

#[test]
fn udp_probe_brings_a_backend_up_and_down() {
    let b = Backend::start("b");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let hp = udp.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let responder = std::thread::spawn(move || {
        let _ = udp.set_read_timeout(Some(Duration::from_millis(20)));
        let mut buf = [0u8; 64];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = udp.recv_from(&mut buf)
                && &buf[..n] == b"PING\n"
            {
                let _ = udp.send_to(b"PONG", peer);
            }
        }
    });
    let port = free_port();
    let hc = format!(
        "kind = \"probe\"\nprobe_protocol = \"udp\"\nprobe_send = 'PING\\n'\nprobe_recv = 'PONG'\ninterval = \"100ms\"\ntimeout = \"80ms\"\nport = {hp}\ninitial_status = \"unhealthy\"\n"
    );
    let cfg = hc_config(port, "roundrobin", &[b.line()], "", &hc);
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    wait_log(&bx, &up_line(&b.line()), 1, Duration::from_secs(5));
    assert_eq!(who(port), "b");
    stop.store(true, Ordering::Relaxed);
    let _ = responder.join();
    // Closed port: ICMP port unreachable -> refused, or no answer -> timeout.
    wait_log(&bx, &down_line(&b.line()), 1, Duration::from_secs(5));
    assert!(bx.logs().contains("(refused") || bx.logs().contains("(timeout"));
}

#[test]
fn a_check_without_timeout_is_bounded_by_the_interval() {
    // Accepts (the kernel completes the handshake) but never answers.
    let mute = TcpListener::bind("127.0.0.1:0").expect("bind");
    let key = mute.local_addr().expect("addr").to_string();
    let port = free_port();
    // No `timeout`: a probe that never gets its reply must still end.
    let hc = "kind = \"probe\"\nprobe_protocol = \"tcp\"\nprobe_send = 'PING\\n'\nprobe_recv = 'OK'\ninterval = \"200ms\"\n";
    let cfg = hc_config(port, "roundrobin", std::slice::from_ref(&key), "", hc);
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    wait_log(&bx, &down_line(&key), 1, Duration::from_secs(5));
    assert!(
        bx.logs().contains("(timeout: no result within 200ms)"),
        "{}",
        bx.logs()
    );
}

#[test]
fn health_survives_a_reload_that_moves_the_listener() {
    let b = Backend::start("b");
    let (p1, p2) = (free_port(), free_port());
    // Coming up takes 3 passes 300 ms apart: a reset would be seen.
    let hc = "kind = \"ping\"\ninterval = \"300ms\"\ntimeout = \"100ms\"\npasses = 3\ninitial_status = \"unhealthy\"\n";
    let bx = Betwixt::start_quiet(&hc_config(p1, "roundrobin", &[b.line()], "", hc), &[p1]);
    wait_log(&bx, &up_line(&b.line()), 1, Duration::from_secs(5));
    // A new bind: the server is stopped and started again, its backends not.
    assert!(bx.reload(&hc_config(p2, "roundrobin", &[b.line()], "", hc)));
    assert_eq!(who(p2), "b", "{}", bx.logs());
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(
        bx.logs().matches(&up_line(&b.line())).count(),
        1,
        "{}",
        bx.logs()
    );
}

//! Process lifecycle through the real binary: reload, drain, signals,
//! half-close, idle timeouts and running out of descriptors.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1024 * 1024;
const LOGGING: &str = "[logging]\nlevel = \"debug\"\n\n";
const DRAIN_1S: &str = "drain_timeout = \"1s\"\n";

/// Backend "A" and a one-server config (with the `extra` keys) on a fresh port.
fn backend_a(extra: &str) -> (Backend, u16, String) {
    let a = Backend::start("A");
    let port = free_port();
    let cfg = config(port, "roundrobin", &[a.line()], extra);
    (a, port, cfg)
}

/// Write `msg` and read the same bytes back.
fn echo_ok(s: &mut TcpStream, msg: &[u8]) -> bool {
    let mut back = vec![0u8; msg.len()];
    s.write_all(msg).is_ok() && s.read_exact(&mut back).is_ok() && back == msg
}

/// A greeted connection; panics if the greeting is not `want`.
fn open(port: u16, want: &str) -> TcpStream {
    let mut s = connect(port);
    assert_eq!(read_line(&mut s), want, "greeting");
    s
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// True once connecting to `port` is refused (within 5 s).
fn stops_accepting(port: u16) -> bool {
    wait_until(Duration::from_secs(5), || refused(port))
}

/// After a reload moved service from port `old` to `new`: `old` stops
/// accepting, `new` greets `name`, and `held` (opened on `old`) still
/// echoes, then closes cleanly.
fn assert_moved(held: &mut TcpStream, old: u16, new: u16, name: &str) {
    assert!(stops_accepting(old), "old port {old} still accepts");
    assert_eq!(who(new), name, "new port {new} does not serve");
    assert!(
        echo_ok(held, b"still here\n"),
        "connection held on the old port cut"
    );
    assert_eq!(exchange(held, b"bye"), b"bye");
}

/// Send `sig` and wait (5 s) for the exit; returns the status and the time
/// from the signal to the exit.
fn exit_on(bx: &mut Betwixt, sig: i32) -> (ExitStatus, Duration) {
    let t0 = Instant::now();
    bx.signal(sig);
    let status = bx
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit within 5 s of signal {sig}:\n{}", bx.logs()));
    (status, t0.elapsed())
}

/// The time since `t0` when `s` closed without data (waiting up to 4 s),
/// or None if it did not.
fn closed_after(s: &mut TcpStream, t0: Instant) -> Option<Duration> {
    closed_without_data(s, Duration::from_secs(4)).then(|| t0.elapsed())
}

/// A 1 s timeout took effect: 0.8 s to 3 s.
fn about_one_second(took: Duration) -> bool {
    took >= Duration::from_millis(800) && took <= Duration::from_secs(3)
}

/// Connects every 5 ms until stopped; counts refused connects.
struct Prober {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    thread: Option<JoinHandle<usize>>,
}

impl Prober {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let (s, f) = (Arc::clone(&stop), Arc::clone(&failures));
        let thread = std::thread::spawn(move || {
            let mut tries = 0;
            while !s.load(Ordering::Relaxed) {
                if refused(port) {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            tries
        });
        Self {
            stop,
            failures,
            thread: Some(thread),
        }
    }

    /// Stop; returns (tries, refused).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let tries = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or(0))
            .unwrap_or(0);
        (tries, self.failures.load(Ordering::Relaxed))
    }
}

/// Stream `total` bytes through `s` (greeted already) to an echo backend,
/// pausing at half way: sends on `half`, waits for `go`. Returns the number
/// of echoed bytes verified, or the first difference.
fn stream_with_pause(
    mut s: TcpStream,
    total: u64,
    half: mpsc::Sender<()>,
    go: mpsc::Receiver<()>,
) -> JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut reader = s.try_clone().map_err(|e| e.to_string())?;
        let check = std::thread::spawn(move || Pattern::new(0x5a).verify(&mut reader));
        let p = Pattern::new(0x5a);
        write_range(&mut s, &p, 0, total / 2)?;
        let _ = half.send(());
        go.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "no go".to_string())?;
        write_range(&mut s, &p, total / 2, total)?;
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        check.join().map_err(|_| "checker panicked".to_string())?
    })
}

/// Write pattern bytes `from..to`.
fn write_range(s: &mut TcpStream, p: &Pattern, from: u64, to: u64) -> Result<(), String> {
    let mut pos = from;
    while pos < to {
        let len = (to - pos).min(64 * 1024) as usize;
        s.write_all(p.at(pos, len)).map_err(|e| e.to_string())?;
        pos += len as u64;
    }
    Ok(())
}

#[test]
fn reload_under_load_keeps_streams_and_listener() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let port = free_port();
    let before = config(port, "roundrobin", &[a.line()], "");
    let after = config(port, "leastconn", &[b.line()], "");
    let bx = Betwixt::start_quiet(&before, &[port]);
    let prober = Prober::start(port);

    let total = 32 * MIB;
    let (half_tx, half_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let stream = stream_with_pause(open(port, "A"), total, half_tx, go_rx);
    half_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("stream reached half way");

    assert!(bx.reload(&after), "reload rejected:\n{}", bx.logs());
    for i in 0..10 {
        assert_eq!(who(port), "B", "new connection {i} after reload");
    }
    go_tx.send(()).expect("go");
    let result = stream.join().expect("stream thread");
    assert_eq!(result, Ok(total), "stream across the reload");

    let (tries, failed) = prober.finish();
    assert!(tries > 10, "prober barely ran ({tries})");
    assert_eq!(
        failed, 0,
        "{failed} of {tries} connects refused during the reload"
    );
}

#[test]
fn invalid_reload_is_rejected_and_old_config_serves() {
    let (_a, port, good) = backend_a("");
    let bad = good.replace("balance = ", "balanse = ");
    let bx = Betwixt::start_quiet(&good, &[port]);
    assert_eq!(who(port), "A");
    assert!(!bx.reload(&bad), "reload with an unknown key applied");
    let logs = bx.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("servers.test.balanse") && l.contains("ERROR")),
        "rejection does not name the key:\n{logs}"
    );
    for _ in 0..3 {
        assert_eq!(who(port), "A");
    }
}

#[test]
fn reload_of_an_emptied_file_is_rejected_and_old_config_serves() {
    // What a reload sees while an editor or `cat > FILE` rewrites the file.
    let (_a, port, good) = backend_a("");
    let bx = Betwixt::start_quiet(&good, &[port]);
    assert!(!bx.reload("\n"), "an empty config closed every server");
    assert!(
        bx.logs()
            .contains("empty (being written?); a reload needs the whole config"),
        "{}",
        bx.logs()
    );
    assert_eq!(who(port), "A");
    assert!(bx.reload(&good), "{}", bx.logs());
}

/// The inode of the socket listening on 127.0.0.1:`port` (/proc/net/tcp).
fn listen_inode(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

#[test]
fn renaming_a_server_keeps_its_listener() {
    let a = Backend::start("A");
    let port = free_port();
    let x = server_section("x", port, "roundrobin", &[a.line()], "");
    let y = server_section("y", port, "roundrobin", &[a.line()], "");
    let bx = Betwixt::start_quiet(&format!("{LOGGING}{x}"), &[port]);
    let mut held = open(port, "A");
    let socket = listen_inode(port).expect("listening socket");
    let prober = Prober::start(port);
    assert!(bx.reload(&format!("{LOGGING}{y}")), "{}", bx.logs());
    // The same socket: its accept queue was never reset, the port never free.
    assert_eq!(listen_inode(port), Some(socket), "{}", bx.logs());
    assert!(
        bx.logs().contains("takes over the listener on"),
        "{}",
        bx.logs()
    );
    assert_eq!(who(port), "A");
    assert!(echo_ok(&mut held, b"still here\n"), "held connection cut");
    let (tries, failed) = prober.finish();
    assert!(tries > 0);
    assert_eq!(
        failed, 0,
        "{failed} of {tries} connects refused during the rename"
    );
}

#[test]
fn reload_replacing_a_server_drains_the_old_one() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let (px, py) = (free_port(), free_port());
    let x = server_section("x", px, "roundrobin", &[a.line()], "");
    let y = server_section("y", py, "roundrobin", &[b.line()], "");
    let bx = Betwixt::start_quiet(&format!("{LOGGING}{x}"), &[px]);
    let mut held = open(px, "A");
    assert!(echo_ok(&mut held, b"hello\n"));
    assert!(bx.reload(&format!("{LOGGING}{y}")), "{}", bx.logs());
    assert_moved(&mut held, px, py, "B");
}

#[test]
fn reload_can_give_a_port_to_another_server_at_once() {
    // Renaming a server (x -> y, same bind) stops x and starts y in one
    // reload: y must get the port every time, not only when x's listener
    // task happened to close first.
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let port = free_port();
    let x = server_section("x", port, "roundrobin", &[a.line()], "");
    let y = server_section("y", port, "roundrobin", &[b.line()], "");
    let bx = Betwixt::start_quiet(&format!("{LOGGING}{x}"), &[port]);
    for round in 0..6 {
        let (cfg, want) = if round % 2 == 0 { (&y, "B") } else { (&x, "A") };
        assert!(bx.reload(&format!("{LOGGING}{cfg}")), "{}", bx.logs());
        assert!(
            !bx.logs().contains("cannot listen"),
            "round {round}:\n{}",
            bx.logs()
        );
        assert_eq!(who(port), want, "round {round}");
    }
}

#[test]
fn reload_changing_bind_moves_the_listener() {
    let (_a, p1, first) = backend_a("");
    let bx = Betwixt::start_quiet(&first, &[p1]);
    let mut held = open(p1, "A");
    let p2 = free_port();
    let moved = first.replace(&format!("127.0.0.1:{p1}\""), &format!("127.0.0.1:{p2}\""));
    assert!(bx.reload(&moved), "{}", bx.logs());
    assert_moved(&mut held, p1, p2, "A");
}

#[test]
fn server_that_could_not_listen_is_started_by_the_next_reload() {
    // A reload adds y on a port another process holds: y cannot listen.
    // Once the port is free, SIGHUP with the same file must start y (the
    // config did not change, but y is not running).
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let (px, py) = (free_port(), free_port());
    let x = server_section("x", px, "roundrobin", &[a.line()], "");
    let y = server_section("y", py, "roundrobin", &[b.line()], "");
    let bx = Betwixt::start_quiet(&format!("{LOGGING}{x}"), &[px]);
    let holder = TcpListener::bind(("127.0.0.1", py)).expect("hold the port");
    let both = format!("{LOGGING}{x}{y}");
    assert!(bx.reload(&both), "{}", bx.logs());
    let logs = bx.logs();
    assert!(
        logs.contains("not listening: y"),
        "the reload did not say y is down:\n{logs}"
    );
    drop(holder);
    assert!(bx.reload(&both), "{}", bx.logs());
    assert!(
        wait_until(Duration::from_secs(5), || !refused(py)),
        "y still not listening after the port was freed:\n{}",
        bx.logs()
    );
    assert_eq!(who(py), "B");
    assert_eq!(who(px), "A", "x was disturbed");
}

#[test]
fn removed_server_is_drained_up_to_its_drain_timeout() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let (px, py) = (free_port(), free_port());
    let x = server_section("x", px, "roundrobin", &[a.line()], DRAIN_1S);
    let y = server_section("y", py, "roundrobin", &[b.line()], "");
    let bx = Betwixt::start_quiet(&format!("{LOGGING}{x}{y}"), &[px, py]);
    let mut held = open(px, "A");
    let t0 = Instant::now();
    assert!(bx.reload(&format!("{LOGGING}{y}")), "{}", bx.logs());
    let took = closed_after(&mut held, t0)
        .expect("connection of the removed server outlived its drain_timeout");
    assert!(about_one_second(took), "closed after {took:?}, want ~1 s");
    assert_eq!(who(py), "B", "the other server was disturbed");
}

#[test]
fn sigterm_without_connections_exits_promptly() {
    let (_a, port, cfg) = backend_a("");
    let mut bx = Betwixt::start_quiet(&cfg, &[port]);
    let (status, took) = exit_on(&mut bx, libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", bx.logs());
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn sigterm_drains_open_connections_then_exits_0() {
    let (_a, port, cfg) = backend_a("");
    let mut bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut held = open(port, "A");

    bx.signal(libc::SIGTERM);
    assert!(
        bx.wait_log("SIGTERM: draining", Duration::from_secs(5)),
        "{}",
        bx.logs()
    );
    assert!(stops_accepting(port), "still accepting after SIGTERM");
    assert!(
        echo_ok(&mut held, b"ping\n"),
        "open connection cut by SIGTERM"
    );
    assert!(
        bx.child.try_wait().expect("try_wait").is_none(),
        "exited before the drain"
    );

    assert_eq!(exchange(&mut held, b""), b"");
    let status = bx
        .wait_exit(Duration::from_secs(3))
        .expect("no exit after the last connection closed");
    assert_eq!(status.code(), Some(0), "{}", bx.logs());
}

#[test]
fn sigterm_drain_timeout_closes_idle_connections() {
    let (_a, port, cfg) = backend_a(DRAIN_1S);
    let mut bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut held = open(port, "A");
    let (status, took) = exit_on(&mut bx, libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", bx.logs());
    assert!(about_one_second(took), "exit after {took:?}, want ~1 s");
    assert!(
        closed_without_data(&mut held, Duration::from_secs(2)),
        "connection not closed by the drain timeout"
    );
}

#[test]
fn sigint_exits_at_once() {
    let (_a, port, cfg) = backend_a("");
    let mut bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut held = open(port, "A");
    let (_, took) = exit_on(&mut bx, libc::SIGINT);
    assert!(took < Duration::from_secs(1), "SIGINT took {took:?}");
    assert!(closed_without_data(&mut held, Duration::from_secs(2)));
}

#[test]
fn sigterm_waits_for_a_server_a_reload_removed() {
    // x is removed by a reload while a connection is open (drain_timeout
    // 30 s): a SIGTERM that follows must let that connection finish too.
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let (px, py) = (free_port(), free_port());
    let x = server_section("x", px, "roundrobin", &[a.line()], "");
    let y = server_section("y", py, "roundrobin", &[b.line()], "");
    let mut bx = Betwixt::start_quiet(&format!("{LOGGING}{x}{y}"), &[px, py]);
    let mut held = open(px, "A");
    assert!(bx.reload(&format!("{LOGGING}{y}")), "{}", bx.logs());
    bx.signal(libc::SIGTERM);
    assert!(
        bx.wait_log("SIGTERM: draining", Duration::from_secs(5)),
        "{}",
        bx.logs()
    );
    assert!(
        bx.wait_exit(Duration::from_millis(500)).is_none(),
        "exited while a removed server's connection was still open:\n{}",
        bx.logs()
    );
    assert!(
        echo_ok(&mut held, b"still here\n"),
        "connection cut by SIGTERM"
    );
    assert_eq!(exchange(&mut held, b""), b"");
    let status = bx
        .wait_exit(Duration::from_secs(3))
        .expect("no exit after the last connection closed");
    assert_eq!(status.code(), Some(0), "{}", bx.logs());
}

#[test]
fn sigint_during_a_drain_exits_at_once() {
    // drain_timeout 30 s (the default) and a connection that stays open:
    // after SIGTERM, SIGINT must still end the process at once.
    let (_a, port, cfg) = backend_a("");
    let mut bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut held = open(port, "A");
    bx.signal(libc::SIGTERM);
    assert!(
        bx.wait_log("SIGTERM: draining", Duration::from_secs(5)),
        "{}",
        bx.logs()
    );
    let (status, took) = exit_on(&mut bx, libc::SIGINT);
    assert!(took < Duration::from_secs(1), "SIGINT took {took:?}");
    assert_eq!(status.code(), Some(0), "{}", bx.logs());
    assert!(closed_without_data(&mut held, Duration::from_secs(2)));
}

#[test]
fn client_half_close_passes_through() {
    let (_a, port, cfg) = backend_a("");
    let _bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut s = connect(port);
    assert_eq!(exchange(&mut s, b"ping"), b"A\nping");
}

/// A backend that says "bye", half-closes, then counts (and checks) the
/// client's upload until EOF.
fn early_closing_backend() -> (TcpListener, SocketAddr, mpsc::Receiver<Result<u64, String>>) {
    serve_once(|mut s| {
        s.write_all(b"bye")
            .and_then(|_| s.shutdown(Shutdown::Write))
            .map_err(|e| e.to_string())
            .and_then(|_| Pattern::new(7).verify(&mut s))
    })
}

#[test]
fn backend_half_close_lets_the_client_keep_sending() {
    let (_l, addr, rx) = early_closing_backend();
    let port = free_port();
    let cfg = config(port, "roundrobin", &[addr.to_string()], "");
    let _bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut s = connect(port);
    assert_eq!(read_to_eof(&mut s).expect("read"), b"bye");
    Pattern::new(7)
        .write(&mut s, MIB)
        .expect("upload after backend FIN");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("backend report");
    assert_eq!(got, Ok(MIB));
}

/// A backend that reads silently and reports the byte count at EOF.
fn sink_backend() -> (TcpListener, SocketAddr, mpsc::Receiver<u64>) {
    serve_once(|mut s| {
        let mut n = 0u64;
        let mut buf = [0u8; 4096];
        while let Ok(k @ 1..) = s.read(&mut buf) {
            n += k as u64;
        }
        n
    })
}

/// A backend that sends 1 KiB every 100 ms, `chunks` times, then half-closes.
fn trickle_backend(chunks: usize) -> (TcpListener, SocketAddr) {
    let (listener, addr, _) = serve_once(move |mut s| {
        for _ in 0..chunks {
            if s.write_all(&[b'x'; 1024]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = s.shutdown(Shutdown::Write);
        let _ = read_to_eof(&mut s);
    });
    (listener, addr)
}

#[test]
fn idle_timeouts_cut_silence_but_not_one_way_streams() {
    let echo = Backend::start("A");
    let (_sl, sink, sunk) = sink_backend();
    let (_tl, trickle) = trickle_backend(20);
    let (p_idle, p_up, p_down) = (free_port(), free_port(), free_port());
    let t = "client_idle_timeout = \"500ms\"\nbackend_idle_timeout = \"500ms\"\n";
    let cfg = format!(
        "{LOGGING}{}{}{}",
        server_section("idle", p_idle, "roundrobin", &[echo.line()], t),
        server_section("up", p_up, "roundrobin", &[sink.to_string()], t),
        server_section("down", p_down, "roundrobin", &[trickle.to_string()], t),
    );
    let _bx = Betwixt::start_quiet(&cfg, &[p_idle, p_up, p_down]);

    // Upload 1 KiB every 100 ms for 2 s; the backend never answers.
    let up = std::thread::spawn(move || {
        let mut s = connect(p_up);
        for i in 0..20 {
            s.write_all(&[b'u'; 1024])
                .unwrap_or_else(|e| panic!("upload chunk {i}: {e}"));
            std::thread::sleep(Duration::from_millis(100));
        }
        s.shutdown(Shutdown::Write).expect("shutdown");
        let _ = read_to_eof(&mut s);
    });
    // Download the trickle; the client never writes.
    let down = std::thread::spawn(move || {
        let mut s = connect(p_down);
        read_to_eof(&mut s).map(|v| v.len())
    });

    let mut silent = open(p_idle, "A");
    let took = closed_after(&mut silent, Instant::now()).expect("silent connection not closed");
    assert!(
        took >= Duration::from_millis(400) && took <= Duration::from_secs(3),
        "silent connection closed after {took:?}"
    );

    up.join().expect("upload thread");
    let sent = sunk
        .recv_timeout(Duration::from_secs(5))
        .expect("sink report");
    assert_eq!(sent, 20 * 1024, "one-way upload was cut");
    let got = down.join().expect("download thread").expect("download");
    assert_eq!(got, 20 * 1024, "one-way download was cut");
}

#[test]
fn survives_running_out_of_descriptors() {
    let (_a, port, cfg) = backend_a("");
    let bx = Betwixt::start_limited(&cfg, &[port], 64);

    let clients: Vec<TcpStream> = (0..100).map(|_| connect(port)).collect();
    let pressure = bx.wait_log("Too many open files", Duration::from_secs(5));
    assert!(
        pressure,
        "100 connections never hit the 64 fd limit:\n{}",
        bx.logs()
    );
    drop(clients);

    let served = wait_until(Duration::from_secs(5), || {
        let mut s = connect(port);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        read_line(&mut s) == "A"
    });
    assert!(
        served,
        "not serving after descriptor exhaustion:\n{}",
        bx.logs()
    );
}

//! The sockmap fast path (`sockmap = true`, feature "ebpf") through the real
//! binary: bulk both ways intact, early data and banners, half-close both
//! ways, idle timeouts, statistics, and the fallback to splice when the BPF
//! object cannot be loaded. The fast-path tests check the log for each
//! connection's "gated (sockmap)" line, so a silent fallback fails them.
//! They skip with a printed reason when not root or when the build has no
//! BPF object (feature off, or no clang at build time).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{json, request};
use common::*;

const MIB: u64 = 1024 * 1024;
const UP: u8 = 0x5a;
const DOWN: u8 = 0xa7;

/// A server `test` with `sockmap = true` and the API on `api`.
fn sockmap_config(port: u16, api: u16, backend: &str, extra: &str) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\n{}",
        config(
            port,
            "roundrobin",
            &[backend.to_string()],
            &format!("sockmap = true\n{extra}")
        )
    )
}

/// Start betwixt on `cfg`; `None` (with the reason printed) when the fast
/// path cannot run here.
fn start_fast(cfg: &str, port: u16, api: u16) -> Option<Betwixt> {
    if let Some(why) = no_bpf_caps() {
        eprintln!("skipped: {why}");
        return None;
    }
    let bx = Betwixt::start_quiet(cfg, &[port]);
    let api_up = format!("listening on http://127.0.0.1:{api}");
    assert!(
        wait_until(Duration::from_secs(10), || bx.logs().contains(&api_up)),
        "{}",
        bx.logs()
    );
    let logs = bx.logs();
    if let Some(line) = logs
        .lines()
        .find(|l| l.contains("sockmap fast path unavailable"))
    {
        if line.contains("not compiled in") || line.contains("disabled at build time") {
            eprintln!("skipped: {line}");
            return None;
        }
        panic!("with CAP_BPF + CAP_NET_ADMIN the fast path did not load:\n{logs}");
    }
    assert!(logs.contains("sockmap fast path on"), "{logs}");
    Some(bx)
}

/// Why this process cannot load BPF sockmaps (it needs CAP_BPF and
/// CAP_NET_ADMIN, or CAP_SYS_ADMIN, in its effective set).
fn no_bpf_caps() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let (net_admin, sys_admin, bpf) = (12, 21, 39);
    if (has(bpf) && has(net_admin)) || has(sys_admin) {
        None
    } else {
        Some(format!("no CAP_BPF + CAP_NET_ADMIN (CapEff {eff:#x})"))
    }
}

/// Every connection so far went through the fast path: `n` gated lines and
/// no fallback.
#[track_caller]
fn assert_gated(bx: &Betwixt, n: usize) {
    let ok = wait_until(Duration::from_secs(5), || {
        bx.logs().matches("gated (sockmap)").count() >= n
    });
    let logs = bx.logs();
    assert!(ok, "expected {n} gated connections:\n{logs}");
    assert!(!logs.contains("relaying in userspace"), "{logs}");
}

fn send_pattern(
    s: &TcpStream,
    seed: u8,
    total: u64,
) -> std::thread::JoinHandle<Result<u64, String>> {
    let mut w = s.try_clone().expect("clone");
    std::thread::spawn(move || {
        let r = Pattern::new(seed).write(&mut w, total);
        let _ = w.shutdown(Shutdown::Write);
        r.map_err(|e| e.to_string())
    })
}

fn stats(api: u16) -> serde_json::Value {
    json(&request(api, "GET", "/servers/test/stats", None, b"").1)
}

#[test]
fn bulk_both_ways_intact_and_counted() {
    let total = 32 * MIB;
    let (_l, backend, report) = serve_once(move |mut s| {
        let sender = send_pattern(&s, DOWN, total);
        let read = Pattern::new(UP).verify(&mut s);
        let sent = sender.join().unwrap_or(Err("sender panicked".into()));
        sent.map_err(|e| format!("backend send: {e}")).and(read)
    });
    let (port, api) = (free_port(), free_port());
    let cfg = sockmap_config(port, api, &backend.to_string(), "");
    let Some(bx) = start_fast(&cfg, port, api) else {
        return;
    };
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let upload = send_pattern(&s, UP, total);
    let down = Pattern::new(DOWN).verify(&mut s);
    let sent = upload.join().expect("upload");
    assert_eq!(down, Ok(total), "client received; log:\n{}", bx.logs());
    assert_eq!(sent, Ok(total), "client send");
    let up = report
        .recv_timeout(Duration::from_secs(30))
        .expect("backend report");
    assert_eq!(up, Ok(total), "backend received; log:\n{}", bx.logs());
    assert_gated(&bx, 1);
    // The end of the connection accounts the last bytes.
    let counted = wait_until(Duration::from_secs(5), || {
        let st = stats(api);
        let b = &st["backends"][0]["stats"];
        st["active_connections"] == 0
            && st["rx_total"] == total
            && st["tx_total"] == total
            && b["rx"] == total
            && b["tx"] == total
    });
    assert!(counted, "stats: {}", stats(api));
}

#[test]
fn early_data_banner_and_client_half_close() {
    // The backend greets first, answers the client's line, and after the
    // client's FIN still sends a last line.
    let (_l, backend, report) = serve_once(|mut s| -> Result<String, String> {
        s.write_all(b"banner\n").map_err(|e| e.to_string())?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            match s.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                other => return Err(format!("reading the request: {other:?}")),
            }
        }
        s.write_all(b"got ")
            .and_then(|()| s.write_all(&line))
            .map_err(|e| e.to_string())?;
        let rest = read_to_eof(&mut s).map_err(|e| e.to_string())?;
        s.write_all(b"bye\n").map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&rest).into_owned())
    });
    let (port, api) = (free_port(), free_port());
    let cfg = sockmap_config(port, api, &backend.to_string(), "");
    let Some(bx) = start_fast(&cfg, port, api) else {
        return;
    };
    let mut s = connect(port);
    set_timeouts(&s);
    // Client-first: sent before betwixt has even connected to the backend.
    s.write_all(b"early\n").expect("write");
    s.write_all(b"tail").expect("write");
    let mut got = vec![0u8; b"banner\ngot early\n".len()];
    s.read_exact(&mut got).expect("banner and answer");
    assert_eq!(got, b"banner\ngot early\n");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let rest = read_to_eof(&mut s).expect("after half-close");
    assert_eq!(rest, b"bye\n");
    let seen = report
        .recv_timeout(Duration::from_secs(10))
        .expect("report");
    assert_eq!(seen, Ok("tail".to_string()));
    assert_gated(&bx, 1);
}

#[test]
fn backend_half_close_then_client_data() {
    // The backend shuts its side once the client has spoken: a socket
    // whose FIN came before gating cannot be gated (EOPNOTSUPP).
    let (_l, backend, report) = serve_once(|mut s| -> Result<Vec<u8>, String> {
        s.write_all(b"first the backend\n")
            .map_err(|e| e.to_string())?;
        let mut go = [0u8; 3];
        s.read_exact(&mut go).map_err(|e| e.to_string())?;
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        let mut rest = go.to_vec();
        rest.extend(read_to_eof(&mut s).map_err(|e| e.to_string())?);
        Ok(rest)
    });
    let (port, api) = (free_port(), free_port());
    let cfg = sockmap_config(port, api, &backend.to_string(), "");
    let Some(bx) = start_fast(&cfg, port, api) else {
        return;
    };
    let mut s = connect(port);
    set_timeouts(&s);
    let mut first = [0u8; 18];
    s.read_exact(&mut first).expect("backend's data");
    assert_eq!(&first, b"first the backend\n");
    s.write_all(b"go\n").expect("write");
    let got = read_to_eof(&mut s).expect("backend's FIN");
    assert_eq!(got, b"");
    // The backend's write side is closed; the client's is still open.
    s.write_all(b"then the client").expect("write after EOF");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let seen = report
        .recv_timeout(Duration::from_secs(10))
        .expect("report");
    assert_eq!(seen, Ok(b"go\nthen the client".to_vec()));
    assert_gated(&bx, 1);
}

/// A backend that greets "hi" and then reads until EOF, betwixt in front of
/// it with the `extra` keys, and one connection that got the greeting.
/// `None` (reason printed) when the fast path cannot run here.
struct Greeted {
    bx: Betwixt,
    s: TcpStream,
    backend: std::net::SocketAddr,
    api: u16,
    // Keeps the backend's listener open.
    _listener: std::net::TcpListener,
}

fn greeted(extra: &str) -> Option<Greeted> {
    let (listener, backend, _report) = serve_once(|mut s| {
        let _ = s.write_all(b"hi\n");
        let _ = read_to_eof(&mut s);
    });
    let (port, api) = (free_port(), free_port());
    let cfg = sockmap_config(port, api, &backend.to_string(), extra);
    let bx = start_fast(&cfg, port, api)?;
    let mut s = connect(port);
    set_timeouts(&s);
    let mut hi = [0u8; 3];
    s.read_exact(&mut hi).expect("greeting");
    Some(Greeted {
        bx,
        s,
        backend,
        api,
        _listener: listener,
    })
}

#[test]
fn idle_timeout_ends_a_gated_connection() {
    let Some(Greeted { bx, mut s, api, .. }) = greeted("client_idle_timeout = \"1s\"") else {
        return;
    };
    let start = Instant::now();
    let rest = read_to_eof(&mut s);
    let took = start.elapsed();
    assert!(matches!(rest.as_deref(), Ok(b"")), "{rest:?}");
    // 1 s of idleness, judged from counters read once a second.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_gated(&bx, 1);
    assert!(wait_until(
        Duration::from_secs(5),
        || stats(api)["active_connections"] == 0
    ));
}

#[test]
fn many_concurrent_echo_connections() {
    let b = Backend::start("E");
    let (port, api) = (free_port(), free_port());
    let cfg = sockmap_config(port, api, &b.line(), "");
    let Some(bx) = start_fast(&cfg, port, api) else {
        return;
    };
    let n = 40;
    let clients: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(port);
                set_timeouts(&s);
                let greeting = read_line(&mut s);
                let data: Vec<u8> = Pattern::new(i as u8).at(0, 64 * 1024 + i).to_vec();
                (greeting, exchange(&mut s, &data) == data)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let (greeting, echoed) = c.join().expect("client thread");
        assert_eq!(greeting, "E", "connection {i}");
        assert!(echoed, "connection {i}: echo differs");
    }
    assert_gated(&bx, n);
    let idle = wait_until(Duration::from_secs(5), || {
        stats(api)["active_connections"] == 0
    });
    assert!(idle, "{}", stats(api));
}

/// A client that sends and half-closes at once is usually in CLOSE_WAIT
/// before betwixt gates it: sockmap refuses it (EOPNOTSUPP) and splice
/// relays it. Either way every byte arrives.
#[test]
fn client_fin_before_gating_still_relays() {
    let b = Backend::start("E");
    let (port, api) = (free_port(), free_port());
    let cfg = sockmap_config(port, api, &b.line(), "");
    let Some(bx) = start_fast(&cfg, port, api) else {
        return;
    };
    for i in 0..20 {
        let mut s = connect(port);
        set_timeouts(&s);
        let got = exchange(&mut s, format!("request {i}\n").as_bytes());
        assert_eq!(String::from_utf8_lossy(&got), format!("E\nrequest {i}\n"));
    }
    let logs = bx.logs();
    let (gated, fell_back) = (
        logs.matches("gated (sockmap)").count(),
        logs.matches("relaying in userspace").count(),
    );
    assert_eq!(gated + fell_back, 20, "{logs}");
    eprintln!("{gated} gated, {fell_back} relayed by splice");
}

#[test]
fn sigterm_drain_timeout_ends_a_gated_connection() {
    let Some(Greeted { mut bx, mut s, .. }) = greeted("drain_timeout = \"1s\"") else {
        return;
    };
    assert_gated(&bx, 1);
    let start = Instant::now();
    bx.signal(libc::SIGTERM);
    assert!(
        closed_without_data(&mut s, Duration::from_secs(5)),
        "not closed"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed before the drain timeout: {took:?}"
    );
    let status = bx
        .wait_exit(Duration::from_secs(5))
        .expect("exit after the drain");
    assert!(status.success(), "{status:?}");
}

/// Disabling the backend with `?close=true` (what `on_down = "close"` and
/// the API's close do) ends a gated connection at once; the daemon goes on.
#[test]
fn closing_the_backend_ends_a_gated_connection() {
    let Some(Greeted {
        bx,
        mut s,
        backend,
        api,
        ..
    }) = greeted("")
    else {
        return;
    };
    assert_gated(&bx, 1);
    let start = Instant::now();
    let path = format!("/servers/test/backends/{backend}/disable?close=true");
    let (status, body) = request(api, "POST", &path, None, b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        closed_without_data(&mut s, Duration::from_secs(5)),
        "not closed:\n{}",
        bx.logs()
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(request(api, "GET", "/ping", None, b"").0, 200);
}

/// Without CAP_BPF (uid nobody, no capabilities) loading fails once, with
/// the reason, and connections are relayed by splice.
#[test]
fn unprivileged_falls_back_to_splice() {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root (cannot switch to uid nobody)");
        return;
    }
    let b = Backend::start("A");
    let port = free_port();
    let cfg = config(port, "roundrobin", &[b.line()], "sockmap = true");
    let Some(mut bx) = spawn_as_nobody(&cfg) else {
        return;
    };
    bx.wait_listening(&[format!("127.0.0.1:{port}")]);
    let logs = bx.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("sockmap fast path unavailable: "))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].ends_with("; using splice"), "{logs}");
    assert_eq!(who(port), "A");
    assert!(!bx.logs().contains("gated (sockmap)"));
}

/// betwixt on `cfg` as uid/gid 65534 without capabilities (the config and
/// its directory made readable first).
fn spawn_as_nobody(cfg: &str) -> Option<Betwixt> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("betwixt.toml");
    std::fs::write(&config, cfg).expect("write config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = dir.path().join("betwixt.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log clone");
    let mut cmd = Command::new(BIN);
    cmd.arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        // E.g. the checkout is not readable for uid 65534.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: uid 65534 cannot run {BIN}: {e}");
            return None;
        }
        Err(e) => panic!("spawn betwixt as nobody: {e}"),
    };
    Some(Betwixt {
        child,
        dir,
        config,
        log,
    })
}

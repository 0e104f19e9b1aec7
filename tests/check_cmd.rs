//! `betwixt check URL`: exit 0 healthy, 1 unhealthy, 2 usage error, with one
//! line on stderr saying why; real servers on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

/// An HTTP server answering every request with `status`.
fn http_server(status: u16) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

/// A UDP server answering each datagram with `reply`.
fn udp_server(reply: &'static [u8]) -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(reply, from);
        }
    });
    port
}

#[track_caller]
fn expect(args: &[&str], code: i32, stderr_has: &str) {
    let (got, _, err) = run_cli(args);
    assert_eq!(got, code, "{args:?}: {err}");
    assert!(
        err.contains(stderr_has),
        "{args:?}: {err:?} lacks {stderr_has:?}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}

#[test]
fn tcp_healthy_and_refused() {
    let b = Backend::start("a");
    expect(
        &["check", &format!("tcp://{}", b.line())],
        0,
        "healthy: connected",
    );
    let closed = free_port();
    expect(
        &["check", &format!("tcp://127.0.0.1:{closed}")],
        1,
        "unhealthy: refused",
    );
}

#[test]
fn http_status_decides() {
    let ok = http_server(200);
    expect(
        &["check", &format!("http://127.0.0.1:{ok}/healthz")],
        0,
        "healthy",
    );
    let bad = http_server(503);
    expect(
        &["check", &format!("http://127.0.0.1:{bad}/")],
        1,
        "unhealthy: bad_status",
    );
}

#[test]
fn udp_reply_must_match() {
    let port = udp_server(b"PONG\n");
    let url = format!("udp://127.0.0.1:{port}");
    expect(
        &["check", &url, "--send", "PING", "--expect", r"PONG\n"],
        0,
        "healthy",
    );
    expect(
        &["check", &url, "--send", "PING", "--expect", "NOPE"],
        1,
        "probe_mismatch",
    );
}

#[test]
fn timeout_bounds_the_check() {
    // A UDP server that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    expect(
        &["check", &url, "--expect", "x", "--timeout", "300ms"],
        1,
        "timeout",
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn icmp_to_loopback() {
    // SAFETY: plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    let (code, _, err) = run_cli(&["check", "icmp://127.0.0.1"]);
    if root {
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("echo replies"), "{err}");
    } else {
        // Either a ping socket works or the check says it cannot run.
        assert!(code == 0 || err.contains("unavailable"), "{err}");
    }
    if root {
        expect(
            &["check", "icmp://[::1]", "--timeout", "1s"],
            0,
            "healthy: ::1",
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["check"][..],
        &["check", "ftp://127.0.0.1:21"],
        &["check", "tcp://127.0.0.1"],
        &["check", "udp://127.0.0.1:53"],
        &["check", "tcp://127.0.0.1:1", "--timeout", "soon"],
        &["check", "http://127.0.0.1", "--insecure"],
    ] {
        let (code, _, err) = run_cli(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("betwixt check: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
}

#[test]
fn help_describes_check() {
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for s in [
        "betwixt check URL",
        "--insecure",
        "--send S --expect S",
        "icmp://HOST",
        "--timeout D",
    ] {
        assert!(out.contains(s), "{s}");
    }
}

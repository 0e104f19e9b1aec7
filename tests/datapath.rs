//! Bytes through the real binary: bulk both ways, many connections, IPv6,
//! host names.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

const MIB: u64 = 1024 * 1024;
/// Seeds of the two directions' patterns (different, so a cross-wired or
/// reflected stream fails the check).
const UP: u8 = 0x11;
const DOWN: u8 = 0xc3;

/// Send `total` bytes of `seed`'s pattern on a clone of `s` from a thread,
/// then half-close; the thread returns the count sent.
fn send_pattern(s: &TcpStream, seed: u8, total: u64) -> JoinHandle<Result<u64, String>> {
    let mut w = s.try_clone().expect("clone");
    std::thread::spawn(move || {
        let r = Pattern::new(seed).write(&mut w, total);
        let _ = w.shutdown(Shutdown::Write);
        r.map_err(|e| e.to_string())
    })
}

/// A backend that, for one connection, sends `total` bytes of the DOWN
/// pattern while checking the client's UP pattern; reports the count it read.
fn bulk_backend(total: u64) -> (TcpListener, SocketAddr, mpsc::Receiver<Result<u64, String>>) {
    serve_once(move |mut s| {
        let sender = send_pattern(&s, DOWN, total);
        let read = Pattern::new(UP).verify(&mut s);
        let sent = sender.join().unwrap_or(Err("sender panicked".into()));
        sent.map_err(|e| format!("backend send: {e}")).and(read)
    })
}

#[test]
fn bulk_both_ways_concurrently() {
    let total = 64 * MIB;
    let (_l, backend, report) = bulk_backend(total);
    let port = free_port();
    let _bx = Betwixt::start_quiet(
        &config(port, "roundrobin", &[backend.to_string()], ""),
        &[port],
    );
    let mut s = connect(port);
    let upload = send_pattern(&s, UP, total);
    let down = Pattern::new(DOWN).verify(&mut s);
    assert_eq!(
        upload.join().expect("upload thread"),
        Ok(total),
        "client send"
    );
    assert_eq!(down, Ok(total), "client received");
    let up = report
        .recv_timeout(Duration::from_secs(10))
        .expect("backend report");
    assert_eq!(up, Ok(total), "backend received");
}

#[test]
fn many_concurrent_short_connections() {
    let bs = [Backend::start("A"), Backend::start("B")];
    let port = free_port();
    let lines: Vec<String> = bs.iter().map(Backend::line).collect();
    let _bx = Betwixt::start_quiet(&config(port, "roundrobin", &lines, ""), &[port]);
    let mut conns: Vec<TcpStream> = (0..200).map(|_| connect(port)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let name = read_line(s);
        assert!(
            name == "A" || name == "B",
            "connection {i} greeted {name:?}"
        );
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let msg = format!("message {i}\n");
        s.write_all(msg.as_bytes()).expect("write");
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).expect("echo");
        assert_eq!(back, msg.as_bytes(), "connection {i} crossed");
    }
    for mut s in conns {
        assert_eq!(exchange(&mut s, b""), b"");
    }
}

#[test]
fn ipv6_listener_and_backend() {
    let Ok(probe) = TcpListener::bind("[::1]:0") else {
        eprintln!("SKIP ipv6_listener_and_backend: cannot bind [::1] on this host");
        return;
    };
    let port = probe.local_addr().expect("addr").port();
    drop(probe);
    let backend = Backend::start_at("V6", "[::1]:0".parse().expect("addr"));
    let cfg = config(port, "roundrobin", &[backend.line()], "")
        .replace(&format!("127.0.0.1:{port}"), &format!("[::1]:{port}"));
    assert!(backend.line().starts_with("[::1]:"), "{}", backend.line());
    let mut bx = Betwixt::spawn(&cfg, "betwixt.toml", &[], |_| {});
    bx.wait_listening(&[format!("[::1]:{port}")]);
    let mut s = connect_addr(format!("[::1]:{port}").parse().expect("addr"));
    assert_eq!(exchange(&mut s, b"six"), b"V6\nsix");
}

/// A backend named `localhost` is served, and its name is looked up once
/// (the cache keeps an answer 5 s; the log has a debug line per lookup),
/// not once per connection nor per health check (every 50 ms).
#[test]
fn backend_by_host_name() {
    let a = Backend::start("NAMED");
    let port = free_port();
    let line = format!("localhost:{}", a.addr.port());
    let started = std::time::Instant::now();
    let check =
        "[servers.test.healthcheck]\nkind = \"ping\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\n";
    let cfg = format!("{}\n{check}", config(port, "roundrobin", &[line], ""));
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    for _ in 0..20 {
        assert_eq!(who(port), "NAMED");
    }
    // And ten health checks (ping = a TCP connect) on top of them.
    let checked = wait_until(Duration::from_secs(10), || {
        a.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 30
    });
    assert!(checked, "{}", bx.logs());
    let lookups = bx.logs().matches("looked up localhost").count();
    // A slow machine may pass the 5 s of freshness: one refresh per 5 s.
    let most = 1 + started.elapsed().as_secs() as usize / 5;
    assert!(
        (1..=most).contains(&lookups),
        "{lookups} lookups for 30 connections and checks: {}",
        bx.logs()
    );
}

/// A backend that greets "hi", reads until EOF or error, then reports.
fn watching_backend() -> (TcpListener, SocketAddr, mpsc::Receiver<()>) {
    serve_once(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let _ = s.write_all(b"hi\n");
        let mut buf = [0u8; 4096];
        while let Ok(1..) = s.read(&mut buf) {}
    })
}

#[test]
fn client_reset_closes_the_backend_connection() {
    let (_l, backend, ended) = watching_backend();
    let port = free_port();
    let _bx = Betwixt::start_quiet(
        &config(port, "roundrobin", &[backend.to_string()], ""),
        &[port],
    );
    let mut s = connect(port);
    assert_eq!(read_line(&mut s), "hi");
    s.write_all(&[b'x'; 1000]).expect("write");
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(s); // RST
    assert!(
        ended.recv_timeout(Duration::from_secs(3)).is_ok(),
        "backend connection left open after the client reset"
    );
}

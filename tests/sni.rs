//! SNI routing through the real binary: passthrough (tcp) and termination (tls).
#![cfg(feature = "tls")]

mod common;
mod tls_util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use tls_util::*;

/// Config with an `[sni]` section carrying `sni_keys`.
fn with_sni(port: u16, lines: &[String], extra: &str, sni_keys: &str) -> String {
    format!(
        "{}\n[servers.test.sni]\nread_timeout = \"700ms\"\n{sni_keys}\n",
        config(port, "roundrobin", lines, extra)
    )
}

#[test]
fn passthrough_routes_by_sni_and_the_backend_sees_the_whole_handshake() {
    let pki = Pki::new();
    let a = tls_backend("A", &pki.leaf("a", "DNS:a.example"));
    let b = tls_backend("B", &pki.leaf("b", "DNS:b.example"));
    let port = free_port();
    let lines = [format!("{a} sni=a.example"), format!("{b} sni=B.Example")];
    let _bx = Betwixt::start_quiet(&with_sni(port, &lines, "", ""), &[port]);
    let client = client_config(&pki.ca);
    for _ in 0..3 {
        for (name, want) in [("a.example", "A"), ("b.example", "B")] {
            let mut s = tls_connect(port, name, &client).expect("handshake through passthrough");
            let mut line = vec![0u8; 2];
            s.read_exact(&mut line).expect("greeting");
            assert_eq!(line, format!("{want}\n").as_bytes());
            assert_eq!(echo(&mut s, b"ping"), b"ping");
        }
    }
}

#[test]
fn termination_routes_by_sni() {
    let pki = Pki::new();
    let front = pki.leaf("front", "DNS:a.example,DNS:b.example,DNS:c.example");
    let (a, b, d) = (
        Backend::start("plainA"),
        Backend::start("plainB"),
        Backend::start("dflt"),
    );
    let port = free_port();
    let lines = [
        format!("{} sni=a.example", a.line()),
        format!("{} sni=b.example", b.line()),
        d.line(),
    ];
    let extra = format!("protocol = \"tls\"\n{}", tls_section(&front));
    let _bx = Betwixt::start_quiet(&with_sni(port, &lines, &extra, ""), &[port]);
    let client = client_config(&pki.ca);
    for (name, want) in [
        ("a.example", "plainA"),
        ("b.example", "plainB"),
        ("c.example", "dflt"),
    ] {
        let s = tls_connect(port, name, &client).expect("handshake");
        assert_eq!(greeting(s), want, "{name}");
    }
}

#[test]
fn regexp_is_anchored_and_reject_closes_unknown_names() {
    let pki = Pki::new();
    let a = tls_backend(
        "A",
        &pki.leaf("a", "DNS:www.a.example,DNS:www.a.example.evil"),
    );
    let port = free_port();
    let lines = [format!(r"{a} sni=[a-z]+\\.a\\.example")];
    let keys = "hostname_matching_strategy = \"regexp\"\nunexpected_hostname_strategy = \"reject\"";
    let bx = Betwixt::start_quiet(&with_sni(port, &lines, "", keys), &[port]);
    let client = client_config(&pki.ca);
    let s = tls_connect(port, "www.a.example", &client).expect("handshake");
    assert_eq!(greeting(s), "A", "{}", bx.logs());
    assert!(tls_connect(port, "www.a.example.evil", &client).is_err());
}

#[test]
fn termination_refuses_a_name_no_backend_serves_before_the_handshake() {
    let pki = Pki::new();
    let front = pki.leaf("front", "DNS:a.example,DNS:c.example");
    let a = Backend::start("plainA");
    let port = free_port();
    let lines = [format!("{} sni=a.example", a.line())];
    let extra = format!("protocol = \"tls\"\n{}", tls_section(&front));
    let keys = "unexpected_hostname_strategy = \"reject\"";
    let bx = Betwixt::start_quiet(&with_sni(port, &lines, &extra, keys), &[port]);
    let client = client_config(&pki.ca);
    let s = tls_connect(port, "a.example", &client).expect("handshake");
    assert_eq!(greeting(s), "plainA");
    // The certificate would do for c.example, but no backend serves it: an
    // unrecognized_name alert instead of a handshake (after a handshake the
    // client would see a plain close, not an alert).
    for _ in 0..3 {
        let Err(e) = tls_connect(port, "c.example", &client) else {
            panic!("the handshake completed: {}", bx.logs());
        };
        assert!(
            e.to_string().contains("UnrecognisedName"),
            "{e}\n{}",
            bx.logs()
        );
    }
}

#[test]
fn garbage_truncated_and_silent_hellos_are_closed() {
    let a = Backend::start("never");
    let port = free_port();
    let bx = Betwixt::start_quiet(
        &with_sni(
            port,
            &[a.line()],
            "",
            "unexpected_hostname_strategy = \"any\"",
        ),
        &[port],
    );
    let closed = |s: &std::net::TcpStream| {
        let mut buf = [0u8; 16];
        match (&*s).read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    };
    // Garbage: closed at once, well before read_timeout.
    let mut g = connect(port);
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let start = Instant::now();
    assert!(closed(&g));
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    // Truncated: a record header promising more, then EOF from the client.
    let mut t = connect(port);
    t.write_all(&[22, 3, 1, 0, 200, 1, 0, 0]).unwrap();
    t.shutdown(std::net::Shutdown::Write).unwrap();
    let start = Instant::now();
    assert!(closed(&t));
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    // Silent: closed at read_timeout (700 ms).
    let s = connect(port);
    let start = Instant::now();
    assert!(closed(&s));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(4),
        "{took:?} {}",
        bx.logs()
    );
    assert_eq!(
        a.accepted.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "{}",
        bx.logs()
    );
}

//! Requests the API must refuse without leaving anything behind, and
//! clients that must not stall it, against the real binary.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::http::{json, raw, request};
use common::*;

const AUTH: Option<&str> = Some("admin:pw");

fn start_api(backend: &str) -> (Betwixt, u16) {
    let (bx, api, _) = start_with_metrics(backend);
    (bx, api)
}

fn start_with_metrics(backend: &str) -> (Betwixt, u16, u16) {
    let (api, metrics, port) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\
         [api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[api.basic_auth]\nlogin = \"admin\"\npassword = \"pw\"\n\n\
         [servers.web]\nbind = \"127.0.0.1:{port}\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"{backend}\"]\n"
    );
    (Betwixt::start(&cfg, &[api, metrics, port]), api, metrics)
}

fn body(bind: &str, extra: &str, backend: &str) -> String {
    format!(
        r#"{{"bind":"{bind}",{extra}"discovery":{{"kind":"static","static_list":["{backend}"]}}}}"#
    )
}

fn names(api: u16) -> Vec<String> {
    let (status, text) = request(api, "GET", "/servers", AUTH, b"");
    assert_eq!(status, 200, "{text}");
    json(&text)
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn a_server_that_cannot_start_leaves_nothing_behind() {
    let b = Backend::start("one");
    let (bx, api) = start_api(&b.line());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy = udp.local_addr().unwrap().to_string();
    let udp_body = body(
        &busy,
        r#""protocol":"udp","client_idle_timeout":"10s","#,
        &b.line(),
    );

    // A busy UDP port: refused, and no trace of the server is left.
    let (status, text) = request(api, "POST", "/servers/u", AUTH, udp_body.as_bytes());
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("servers.u.bind"), "{text}");
    assert_eq!(names(api), ["web"]);
    let (_, dump) = request(api, "GET", "/dump", AUTH, b"");
    assert!(!dump.contains("servers.u"), "{dump}");
    let (status, health) = request(api, "GET", "/health", AUTH, b"");
    assert_eq!(status, 200, "{health}");

    // Once the port is free, the same request works (not "already exists").
    drop(udp);
    let (status, text) = request(api, "POST", "/servers/u", AUTH, udp_body.as_bytes());
    assert_eq!(status, 200, "{text}\n{}", bx.logs());
    assert_eq!(names(api), ["u", "web"]);

    // A UDP server may take a port whose TCP side is busy.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_busy = tcp.local_addr().unwrap().to_string();
    let other = body(
        &tcp_busy,
        r#""protocol":"udp","client_idle_timeout":"10s","#,
        &b.line(),
    );
    let (status, text) = request(api, "POST", "/servers/u2", AUTH, other.as_bytes());
    assert_eq!(status, 200, "{text}");

    // What a config file would warn about is logged for an API change too
    // (here: a plain TCP server, not the TLS one the client may think).
    let ignored = body(
        &format!("127.0.0.1:{}", free_port()),
        r#""tls":{"cert_path":"/c.pem","key_path":"/k.pem"},"#,
        &b.line(),
    );
    let (status, text) = request(api, "POST", "/servers/t", AUTH, ignored.as_bytes());
    assert_eq!(status, 200, "{text}");
    assert!(
        bx.wait_log(
            "servers.t.tls: ignored unless protocol",
            Duration::from_secs(5)
        ),
        "{}",
        bx.logs()
    );
}

#[test]
fn a_tls_server_whose_files_are_missing_does_not_block_later_changes() {
    let b = Backend::start("one");
    let (bx, api) = start_api(&b.line());
    let tls = body(
        &format!("127.0.0.1:{}", free_port()),
        r#""protocol":"tls","tls":{"cert_path":"/nonexistent/c.pem","key_path":"/nonexistent/k.pem"},"#,
        &b.line(),
    );
    let (status, text) = request(api, "POST", "/servers/t", AUTH, tls.as_bytes());
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("/nonexistent/c.pem"), "{text}");

    // The next change is applied and really listening.
    let port = free_port();
    let plain = body(&format!("127.0.0.1:{port}"), "", &b.line());
    let (status, text) = request(api, "POST", "/servers/p", AUTH, plain.as_bytes());
    assert_eq!(status, 200, "{text}\n{}", bx.logs());
    assert_eq!(names(api), ["p", "web"]);
    assert_eq!(who(port), "one");
}

#[test]
fn clients_that_stall_their_body_do_not_block_the_api() {
    let b = Backend::start("one");
    let (_bx, api, metrics) = start_with_metrics(&b.line());
    // Each announces a body and never sends it; without credentials too.
    let stalled: Vec<TcpStream> = (0..6)
        .map(|i| {
            let port = if i < 4 { api } else { metrics };
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let auth = if i % 2 == 0 {
                "Authorization: Basic YWRtaW46cHc=\r\n"
            } else {
                ""
            };
            let head = format!(
                "POST /servers/x HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100000\r\n\r\n{{"
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(request(api, "GET", "/ping", None, b""), (200, "OK".into()));
    assert_eq!(request(api, "GET", "/health", AUTH, b"").0, 200);
    assert_eq!(request(metrics, "GET", "/metrics", None, b"").0, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(stalled);
}

#[test]
fn absurd_or_chunked_bodies_are_refused_and_the_daemon_lives() {
    let b = Backend::start("one");
    let (mut bx, api, metrics) = start_with_metrics(&b.line());
    // tiny_http alone allocated the declared length when it drained an
    // unread body, and the process aborted (no credentials needed).
    for port in [api, metrics] {
        let answer = raw(
            port,
            b"POST /servers/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999\r\n\r\nabc",
        );
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(
            answer.contains("body larger than 1048576 bytes"),
            "{answer}"
        );
    }
    // A request before the refused one on the same connection is answered
    // first; a chunked body is refused with 411.
    let answer = raw(
        api,
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /servers/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    let (first, second) = answer.split_once("\r\n\r\nOK").expect(&answer);
    assert!(first.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        second.contains("HTTP/1.1 411 Length Required\r\n"),
        "{answer}"
    );
    assert_eq!(
        bx.wait_exit(Duration::from_millis(50)),
        None,
        "{}",
        bx.logs()
    );
    assert_eq!(request(api, "GET", "/ping", None, b""), (200, "OK".into()));
    assert_eq!(names(api), ["web"]);
}

#[test]
fn changes_during_a_sigterm_drain_are_refused_at_once() {
    let b = Backend::start("one");
    let (bx, api) = start_api(&b.line());
    let port: u16 = bx
        .logs()
        .split("(web): listening on 127.0.0.1:")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("web's port in the log");
    // An open connection keeps the drain going (drain_timeout 30 s).
    let mut held = connect(port);
    assert_eq!(read_line(&mut held), "one", "proxied before SIGTERM");
    bx.signal(libc::SIGTERM);
    assert!(
        bx.wait_log("draining", Duration::from_secs(5)),
        "{}",
        bx.logs()
    );
    let t = Instant::now();
    let new = body(&format!("127.0.0.1:{}", free_port()), "", &b.line());
    let (status, text) = request(api, "POST", "/servers/late", AUTH, new.as_bytes());
    assert_eq!(status, 503, "{text}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(held);
}

#[test]
fn idle_connections_are_capped_and_the_api_still_answers_below_the_cap() {
    let b = Backend::start("one");
    let (bx, _api, metrics) = start_with_metrics(&b.line());
    // 200 idle connections (no byte sent): below the cap, the API answers.
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", metrics)).unwrap())
        .collect();
    assert_eq!(request(metrics, "GET", "/metrics", None, b"").0, 200);
    // Past the cap (256 per listener; each costs a thread): closed at once.
    idle.extend((0..100).map(|_| TcpStream::connect(("127.0.0.1", metrics)).unwrap()));
    for s in idle.iter_mut().rev().take(20) {
        assert!(
            closed_without_data(s, Duration::from_secs(2)),
            "past the cap but kept"
        );
    }
    let threads = std::fs::read_dir(format!("/proc/{}/task", bx.pid()))
        .unwrap()
        .count();
    assert!(threads < 256 + 64 + 40, "{threads} threads");
    drop(idle);
    assert!(wait_until(Duration::from_secs(5), || request(
        metrics, "GET", "/metrics", None, b""
    )
    .0 == 200));
}

//! `http`, `webhook` and TLS `probe` health checks through the real binary,
//! against servers written here on 127.0.0.1. Health is observed through
//! traffic: one greeting backend `A`; while it is down betwixt has nobody to
//! send a client to and closes the connection without data.

// Without TLS the TLS servers and their counters go unused.
#![cfg_attr(not(feature = "tls"), allow(dead_code, clippy::clone_on_copy))]

mod common;
#[cfg(feature = "tls")]
mod tls_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// How the check server answers.
#[derive(Debug, Clone)]
enum Reply {
    /// An HTTP response with this status and body.
    Http(u16, Vec<u8>),
    /// Read the request, then never answer (hold the connection).
    Silent,
    /// Not HTTP.
    Garbage,
    /// Close with a TCP reset after reading the request.
    Reset,
    /// Read once, write these bytes, close (a probe peer).
    Raw(Vec<u8>),
}

/// One request as the server saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    sni: Option<String>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    reply: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    /// Body bytes written in the last response, and whether all were.
    written: AtomicUsize,
    finished: AtomicBool,
    handshake_failures: AtomicUsize,
}

/// A check server on 127.0.0.1 (TLS with a config when given).
struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

#[cfg(feature = "tls")]
type TlsConfig = Option<Arc<rustls::ServerConfig>>;
#[cfg(not(feature = "tls"))]
type TlsConfig = Option<()>;

impl Server {
    fn start(reply: Reply, tls: TlsConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        *shared.reply.lock().expect("lock") = Some(reply);
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (sh, tls) = (Arc::clone(&sh), tls.clone());
                        std::thread::spawn(move || serve(s, &sh, tls));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { addr, shared, stop }
    }

    fn set(&self, reply: Reply) {
        *self.shared.reply.lock().expect("lock") = Some(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(s: TcpStream, shared: &Shared, tls: TlsConfig) {
    let _ = s.set_nonblocking(false);
    set_timeouts(&s);
    // A small send buffer, so that what was written is close to what the
    // client read (the body-cap test counts it).
    let _ = socket2::SockRef::from(&s).set_send_buffer_size(64 * 1024);
    #[cfg(feature = "tls")]
    if let Some(config) = tls {
        let Ok(mut conn) = rustls::ServerConnection::new(config) else {
            return;
        };
        let mut tcp = s.try_clone().expect("clone");
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let sni = conn.server_name().map(str::to_string);
        return answer(rustls::StreamOwned::new(conn, tcp), &s, shared, sni);
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    let stream = s.try_clone().expect("clone");
    answer(stream, &s, shared, None);
}

fn answer(mut io: impl Read + Write, tcp: &TcpStream, shared: &Shared, sni: Option<String>) {
    let reply = shared.reply.lock().expect("lock").clone();
    if let Some(Reply::Raw(bytes)) = &reply {
        let mut buf = [0u8; 64];
        let _ = io.read(&mut buf);
        let _ = io.write_all(bytes);
        let _ = io.flush();
        return;
    }
    let Some(mut seen) = read_request(&mut io) else {
        return;
    };
    seen.sni = sni;
    shared.seen.lock().expect("lock").push(seen);
    match reply {
        Some(Reply::Http(status, body)) => respond(&mut io, shared, status, &body),
        Some(Reply::Silent) => std::thread::sleep(Duration::from_secs(3)),
        Some(Reply::Garbage) => {
            let _ = io.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        }
        Some(Reply::Reset) => {
            let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
        }
        _ => {}
    }
}

fn respond(io: &mut impl Write, shared: &Shared, status: u16, body: &[u8]) {
    shared.written.store(0, Ordering::Relaxed);
    shared.finished.store(false, Ordering::Relaxed);
    let head = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if io.write_all(head.as_bytes()).is_err() {
        return;
    }
    for piece in body.chunks(16 * 1024) {
        if io.write_all(piece).is_err() {
            return;
        }
        shared.written.fetch_add(piece.len(), Ordering::Relaxed);
    }
    let _ = io.flush();
    shared.finished.store(true, Ordering::Relaxed);
}

/// Request head and a Content-Length body.
fn read_request(io: &mut impl Read) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 65536 || io.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let mut seen = Seen {
        method,
        target,
        headers,
        ..Seen::default()
    };
    let len: usize = seen
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    io.read_exact(&mut body).ok()?;
    seen.body = body;
    Some(seen)
}

/// betwixt with one server on a fresh port, backend `A`, and a health check
/// section (`lines`, after `[servers.test.healthcheck]`).
fn start(a: &Backend, hc: &str) -> (Betwixt, u16) {
    let port = free_port();
    let extra = format!("\n[servers.test.healthcheck]\ninterval = \"200ms\"\n{hc}\n");
    let text = config(port, "roundrobin", &[a.line()], &extra);
    (Betwixt::start_quiet(&text, &[port]), port)
}

const DETECT: Duration = Duration::from_secs(10);

#[track_caller]
fn wait_up(b: &Betwixt, port: u16) {
    let ok = wait_until(DETECT, || who(port) == "A");
    assert!(ok, "backend never came up:\n{}", b.logs());
}

/// Wait until `A` is down and the log names `cause`.
#[track_caller]
fn wait_down(b: &Betwixt, port: u16, cause: &str) {
    let needle = format!("is down ({cause}");
    let ok = wait_until(DETECT, || {
        b.logs().contains(&needle) && who(port).is_empty()
    });
    assert!(ok, "backend never went down with {cause}:\n{}", b.logs());
}

fn http_hc(server: &Server, extra: &str) -> String {
    format!("kind = \"http\"\nport = {}\n{extra}", server.addr.port())
}

#[test]
fn http_status_decides_and_recovers() {
    let a = Backend::start("A");
    let srv = Server::start(Reply::Http(204, Vec::new()), None);
    let hc = http_hc(
        &srv,
        "initial_status = \"unhealthy\"\nexpected_status = [\"200-204\", 302]",
    );
    let (b, port) = start(&a, &hc);
    wait_up(&b, port);
    srv.set(Reply::Http(503, b"busy".to_vec()));
    wait_down(&b, port, "bad_status: status 503 not in 200-204, 302");
    srv.set(Reply::Http(302, Vec::new()));
    wait_up(&b, port);
    let seen = srv.seen();
    assert!(
        seen.iter().all(|s| s.method == "GET" && s.target == "/"),
        "{seen:?}"
    );
    let host = format!("127.0.0.1:{}", srv.addr.port());
    assert_eq!(seen[0].header("host"), Some(host.as_str()));
    assert_eq!(seen[0].header("connection"), Some("close"));
}

#[test]
fn http_host_override_headers_and_body_match() {
    let a = Backend::start("A");
    let srv = Server::start(Reply::Http(200, b"{\"status\": \"alive\"}".to_vec()), None);
    let extra = "initial_status = \"unhealthy\"\nmethod = \"post\"\npath = \"/health?deep=1\"\n\
                 host = \"www.example.test:8080\"\ncontains = \"alive\"\n\
                 [servers.test.healthcheck.headers]\nX-Probe = \"betwixt\"\nHost = \"ignored.test\"";
    let (b, port) = start(&a, &http_hc(&srv, extra));
    wait_up(&b, port);
    let seen = srv.seen();
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.target.as_str()),
        ("POST", "/health?deep=1")
    );
    assert_eq!(s.header("host"), Some("www.example.test:8080"));
    assert_eq!(
        s.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .count(),
        1
    );
    assert_eq!(s.header("x-probe"), Some("betwixt"));
    srv.set(Reply::Http(200, b"{\"status\": \"dead\"}".to_vec()));
    wait_down(&b, port, "body_mismatch");
}

/// 10 MiB of filler with `NEEDLE` at `at`.
fn big_body(at: usize) -> Vec<u8> {
    let mut body = vec![b'.'; 10 << 20];
    body[at..at + 6].copy_from_slice(b"NEEDLE");
    body
}

#[test]
fn http_reads_at_most_one_mib_of_the_body() {
    let a = Backend::start("A");
    let srv = Server::start(Reply::Http(200, big_body(1000)), None);
    let hc = http_hc(
        &srv,
        "initial_status = \"unhealthy\"\ncontains = \"NEEDLE\"",
    );
    let (b, port) = start(&a, &hc);
    wait_up(&b, port);
    // Found in the first MiB: passes. Only after the cap: the check judges
    // the first MiB alone, so it fails (had it read all, it would pass).
    srv.set(Reply::Http(200, big_body(9 << 20)));
    wait_down(
        &b,
        port,
        "body_mismatch: status 200, body of 1048576 bytes (read up to the 1 MiB cap)",
    );
    let ok = wait_until(DETECT, || srv.shared.written.load(Ordering::Relaxed) > 0);
    assert!(ok);
    assert!(
        !srv.shared.finished.load(Ordering::Relaxed),
        "the server wrote all 10 MiB"
    );
    let written = srv.shared.written.load(Ordering::Relaxed);
    assert!(written < 10 << 20, "{written}");
}

#[test]
fn http_connect_failures_and_junk_are_classified() {
    let a = Backend::start("A");
    let cases = [
        (Reply::Garbage, "bad_response", ""),
        (Reply::Reset, "network_error", ""),
        (Reply::Silent, "timeout", "timeout = \"150ms\""),
    ];
    for (reply, cause, extra) in cases {
        let srv = Server::start(reply, None);
        let (b, port) = start(&a, &http_hc(&srv, extra));
        wait_down(&b, port, cause);
    }
    let closed = free_port();
    let (b, port) = start(&a, &format!("kind = \"http\"\nport = {closed}"));
    wait_down(&b, port, "refused");
}

/// A receiver of webhook questions: `status` for every request.
#[test]
fn webhook_posts_json_and_non_2xx_marks_down() {
    let a = Backend::start("A");
    let hook = Server::start(Reply::Http(200, b"yes".to_vec()), None);
    let url = format!("http://{}/ask?token=t", hook.addr);
    let hc = format!("kind = \"webhook\"\ninitial_status = \"unhealthy\"\nwebhook_url = \"{url}\"");
    let (b, port) = start(&a, &hc);
    wait_up(&b, port);
    let seen = hook.seen();
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.target.as_str()),
        ("POST", "/ask?token=t")
    );
    assert_eq!(s.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&s.body).expect("json body");
    let want = serde_json::json!({"ip": "127.0.0.1", "port": a.addr.port()});
    assert_eq!(body, want);
    hook.set(Reply::Http(500, Vec::new()));
    wait_down(&b, port, "bad_status: webhook status 500");
}

#[test]
fn webhook_get_sends_a_query() {
    let a = Backend::start("A");
    let hook = Server::start(Reply::Http(404, Vec::new()), None);
    let url = format!("http://{}/ask", hook.addr);
    let hc = format!("kind = \"webhook\"\nwebhook_method = \"GET\"\nwebhook_url = \"{url}\"");
    let (b, port) = start(&a, &hc);
    wait_down(&b, port, "bad_status");
    let s = &hook.seen()[0];
    assert_eq!(s.method, "GET");
    assert_eq!(
        s.target,
        format!("/ask?ip=127.0.0.1&port={}", a.addr.port())
    );
    hook.set(Reply::Http(200, Vec::new()));
    wait_up(&b, port);
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;

    /// A self-signed certificate for `backend.test` and 127.0.0.1, made by
    /// openssl; `None` (the test skips) without openssl.
    fn self_signed(dir: &std::path::Path) -> Option<Arc<rustls::ServerConfig>> {
        let sans = "DNS:backend.test,IP:127.0.0.1";
        match tls_util::try_self_signed(dir, "backend.test", sans) {
            Ok(leaf) => Some(tls_util::server_config(&leaf)),
            Err(e) => {
                eprintln!("SKIP: openssl could not make a certificate: {e}");
                None
            }
        }
    }

    #[test]
    fn https_verifies_unless_told_not_to_and_sends_the_host_as_sni() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(config) = self_signed(dir.path()) else {
            return;
        };
        let a = Backend::start("A");
        let srv = Server::start(Reply::Http(200, b"ok".to_vec()), Some(config));
        let hc = http_hc(&srv, "tls = true\nhost = \"backend.test\"");
        let (b, port) = start(&a, &hc);
        wait_down(&b, port, "tls_error");
        // The server thread sees the client's alert a moment after the
        // checker has given up on the certificate.
        assert!(wait_until(Duration::from_secs(5), || {
            srv.shared.handshake_failures.load(Ordering::Relaxed) > 0
        }));
        drop(b);
        let extra = "tls = true\nhost = \"backend.test\"\ninsecure_skip_verify = true\n\
                     initial_status = \"unhealthy\"";
        let (b, port) = start(&a, &http_hc(&srv, extra));
        wait_up(&b, port);
        assert!(
            b.logs()
                .contains("insecure_skip_verify: backend certificates are not verified")
        );
        let seen = srv.seen();
        assert_eq!(seen[0].sni.as_deref(), Some("backend.test"));
        assert_eq!(seen[0].header("host"), Some("backend.test"));
    }

    #[test]
    fn tls_probe_verifies_unless_insecure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(config) = self_signed(dir.path()) else {
            return;
        };
        let a = Backend::start("A");
        let srv = Server::start(Reply::Raw(b"PONG".to_vec()), Some(config));
        let probe = format!(
            "kind = \"probe\"\nport = {}\nprobe_protocol = \"tls\"\nprobe_send = 'PING'\nprobe_recv = 'PONG'",
            srv.addr.port()
        );
        let (b, port) = start(&a, &probe);
        wait_down(&b, port, "tls_error");
        drop(b);
        let hc = format!("{probe}\nprobe_tls_insecure = true\ninitial_status = \"unhealthy\"");
        let (b, port) = start(&a, &hc);
        wait_up(&b, port);
        srv.set(Reply::Raw(b"NOPE".to_vec()));
        wait_down(&b, port, "probe_mismatch");
    }
}

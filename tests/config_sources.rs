//! `from-url` and `from-consul` against a local HTTP server (Consul has no
//! package here: the server answers like Consul's `/v1/kv/KEY?raw`).

mod common;
#[path = "common/http_server.rs"]
mod http_server;
#[path = "common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http_server::{Body, HttpServer};

const LIMIT: Duration = Duration::from_secs(10);

struct Run {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_env(args, &[])
    }

    fn spawn_env(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// Wait until betwixt accepts on `port`.
    fn wait_port(&self, port: u16) {
        let up = wait_until(LIMIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "not listening on {port}: {}", self.logs());
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hup(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cfg(port: u16, b: &Backend) -> String {
    config(port, "roundrobin", &[b.line()], "")
}

#[test]
fn from_url_starts_and_reloads_on_sighup() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let http = HttpServer::start();
    let port = free_port();
    http.set_text(&cfg(port, &a));
    let run = Run::spawn(&["from-url", &http.url("/betwixt.toml")]);
    run.wait_port(port);
    assert!(wait_until(LIMIT, || who(port) == "a"), "{}", run.logs());
    http.set_text(&cfg(port, &b));
    run.hup();
    assert!(wait_until(LIMIT, || who(port) == "b"), "{}", run.logs());
    // A failing source on reload: logged, the running config stays.
    http.set(404, Body::Bytes(b"no such config".to_vec()));
    run.hup();
    assert!(
        wait_until(LIMIT, || run.logs().contains("status 404")),
        "{}",
        run.logs()
    );
    assert!(run.logs().contains("reload rejected"), "{}", run.logs());
    assert_eq!(who(port), "b");
}

/// A config server that answers `text` until `hang` is set, then accepts
/// and never answers.
fn config_server(text: String, hang: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/betwixt.toml", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            if hang.load(Ordering::Relaxed) {
                held.push(stream);
                continue;
            }
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

/// While a SIGHUP's fetch waits for a config server that does not answer
/// (up to 10 s), betwixt still handles signals: SIGTERM ends it at once.
#[test]
fn a_hanging_reload_fetch_does_not_hold_up_the_daemon() {
    let a = Backend::start("a");
    let port = free_port();
    let hang = Arc::new(AtomicBool::new(false));
    let url = config_server(cfg(port, &a), hang.clone());
    let mut run = Run::spawn(&["from-url", &url]);
    run.wait_port(port);
    assert!(wait_until(LIMIT, || who(port) == "a"), "{}", run.logs());
    hang.store(true, Ordering::Relaxed);
    run.hup();
    let fetching = || run.logs().contains("SIGHUP: reloading");
    assert!(wait_until(LIMIT, fetching), "{}", run.logs());
    assert_eq!(who(port), "a", "the running config serves on");
    let sent = Instant::now();
    unsafe { libc::kill(run.child.id() as i32, libc::SIGTERM) };
    let exited = wait_until(LIMIT, || matches!(run.child.try_wait(), Ok(Some(_))));
    assert!(exited, "{}", run.logs());
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "SIGTERM took {:?}: {}",
        sent.elapsed(),
        run.logs()
    );
}

#[test]
fn from_url_fails_clearly_on_non_2xx() {
    let http = HttpServer::start();
    http.set(503, Body::Bytes(b"maintenance".to_vec()));
    let (code, _out, err) = run_cli(&["from-url", &http.url("/c.toml")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("status 503") && err.contains("maintenance"),
        "{err}"
    );
}

#[test]
fn from_consul_reads_the_kv_key() {
    let a = Backend::start("a");
    let http = HttpServer::start();
    let port = free_port();
    http.set_text(&cfg(port, &a));
    let host = http.addr.to_string();
    let run = Run::spawn(&["from-consul", &host, "-k", "lb/betwixt", "-s", "http"]);
    run.wait_port(port);
    assert!(wait_until(LIMIT, || who(port) == "a"), "{}", run.logs());
    let req = http.last_request();
    assert!(
        req.starts_with("GET /v1/kv/lb/betwixt?raw HTTP/1.1"),
        "{req}"
    );
    // A missing key is a 404 in Consul.
    http.set(404, Body::Bytes(Vec::new()));
    let (code, _out, err) = run_cli(&["from-consul", &host, "-k", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("status 404"), "{err}");
}

/// `from-consul -s https`: the server certificate is verified against the
/// system store, which SSL_CERT_FILE replaces (rustls-native-certs); without
/// it the test CA is unknown and the fetch fails.
#[cfg(feature = "tls")]
#[test]
fn from_consul_over_https_trusts_ssl_cert_file() {
    let Some((dir, pki)) = common::discovery::certificates_or_skip(pki::Pki::make) else {
        return;
    };
    let a = Backend::start("a");
    let https = HttpServer::start_tls(&pki.server_cert, &pki.server_key, None);
    let port = free_port();
    https.set_text(&cfg(port, &a));
    let host = https.addr.to_string();
    let args = [
        "from-consul",
        host.as_str(),
        "-k",
        "lb/betwixt",
        "-s",
        "https",
    ];
    let ca = pki.ca.to_str().unwrap();
    let run = Run::spawn_env(&args, &[("SSL_CERT_FILE", ca)]);
    run.wait_port(port);
    assert!(wait_until(LIMIT, || who(port) == "a"), "{}", run.logs());
    assert!(
        https
            .last_request()
            .starts_with("GET /v1/kv/lb/betwixt?raw HTTP/1.1"),
        "{}",
        https.last_request()
    );
    let empty = dir.path().join("no-roots.pem");
    std::fs::write(&empty, "").unwrap();
    let (code, _out, err) = run_cli_env(&args, &[("SSL_CERT_FILE", empty.to_str().unwrap())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("https://"), "{err}");
}

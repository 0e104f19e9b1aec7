//! `[api.tls]`: the management API over HTTPS, checked with curl against
//! a self-signed certificate made by openssl.
#![cfg(feature = "tls")]

mod common;
mod tls_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// A self-signed certificate for IP 127.0.0.1 (cert.pem, cert.key in `dir`).
fn self_signed(dir: &Path) {
    tls_util::try_self_signed(dir, "cert", "IP:127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
}

fn tls_config(api: u16, dir: &Path) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\n[api.basic_auth]\nlogin = \"admin\"\npassword = \"hunter2\"\n\n[api.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("cert.key").display()
    )
}

/// (status, body) from curl; status 0 when curl itself failed (TLS error...).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = if out.status.success() {
        code.trim().parse().unwrap_or(0)
    } else {
        0
    };
    (code, body.to_string())
}

/// A daemon serving the API over HTTPS with a fresh self-signed certificate:
/// (certificate dir, API port, config, daemon). `None`, with a SKIP line,
/// without curl and openssl.
fn https_api() -> Option<(tempfile::TempDir, u16, String, Betwixt)> {
    if !have("curl") || !have("openssl") {
        eprintln!("SKIP: curl and openssl are needed (apt-get install curl openssl)");
        return None;
    }
    let certs = tempfile::tempdir().unwrap();
    self_signed(certs.path());
    let api = free_port();
    let config = tls_config(api, certs.path());
    let bx = Betwixt::start(&config, &[api]);
    Some((certs, api, config, bx))
}

#[test]
fn api_over_https_with_auth_and_plain_http_refused() {
    let Some((certs, api, _, bx)) = https_api() else {
        return;
    };
    let line = format!("listening on https://127.0.0.1:{api}");
    assert!(wait_until(Duration::from_secs(5), || bx
        .logs()
        .contains(&line)));
    let ca = certs.path().join("cert.pem");
    let ca = ca.to_str().unwrap();
    let url = |path: &str| format!("https://127.0.0.1:{api}{path}");

    assert_eq!(curl(&["--cacert", ca], &url("/ping")), (200, "OK".into()));
    // Not trusted without the CA: the certificate really is the one served.
    assert_eq!(curl(&[], &url("/ping")).0, 0);
    assert_eq!(
        curl(&["--cacert", ca, "-u", "admin:wrong"], &url("/")).0,
        401
    );
    let (status, body) = curl(&["--cacert", ca, "-u", "admin:hunter2"], &url("/"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"pid\": {}", bx.pid())), "{body}");

    // Plain HTTP to the TLS port: closed (maybe after a TLS alert), never served.
    let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let started = Instant::now();
    let _ = s.read_to_end(&mut raw);
    assert!(started.elapsed() < Duration::from_secs(9), "not closed");
    assert!(!String::from_utf8_lossy(&raw).contains("200"), "{raw:?}");

    // Clients that connect and say nothing hold a slot, not the API.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", api)).unwrap())
        .collect();
    let body =
        r#"{"bind":"127.0.0.1:1","discovery":{"kind":"static","static_list":["127.0.0.1:2"]}}"#;
    let (status, _) = curl(
        &[
            "--cacert",
            ca,
            "-u",
            "admin:hunter2",
            "-X",
            "POST",
            "-d",
            body,
        ],
        &url("/servers/x"),
    );
    assert_eq!(status, 200);
    let (status, body) = curl(&["--cacert", ca, "-u", "admin:hunter2"], &url("/servers"));
    assert_eq!(status, 200);
    assert!(body.contains("127.0.0.1:1"), "{body}");
    drop(idle);

    // At most 64 TLS connections: the 65th is closed at once; the slots
    // come back when the idle ones go. The four idle clients above may
    // still hold their slots while the first of these arrive (their EOF not
    // yet seen), so a few of the 64 can be refused; a probe that gets a
    // slot is kept to fill it, and the next one must be refused.
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", api)).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(10), || {
        let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
        let refused = closed_without_data(&mut s, Duration::from_millis(500));
        if !refused {
            idle.push(s);
        }
        refused
    }));
    assert!(idle.len() <= 64 + 8, "{} connections held", idle.len());
    drop(idle);
    assert!(wait_until(Duration::from_secs(5), || {
        curl(&["--cacert", ca], &url("/ping")).0 == 200
    }));
    assert!(!bx.logs().contains("hunter2"), "password in the log");
}

#[test]
fn unreadable_key_stops_the_start_naming_the_file() {
    let certs = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut bx = Betwixt::spawn(&tls_config(api, certs.path()), "b.toml", &[], |_| {});
    let status = bx.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    let logs = bx.logs();
    assert!(logs.contains("cert.pem"), "{logs}");
}

#[test]
fn sighup_re_reads_the_api_certificate_and_keeps_it_when_broken() {
    let Some((certs, api, config, bx)) = https_api() else {
        return;
    };
    let url = format!("https://127.0.0.1:{api}/ping");
    let old = certs.path().join("old.pem");
    std::fs::copy(certs.path().join("cert.pem"), &old).unwrap();
    let (old, new) = (old.to_str().unwrap(), certs.path().join("cert.pem"));
    let new = new.to_str().unwrap();
    assert!(wait_until(Duration::from_secs(5), || curl(
        &["--cacert", old],
        &url
    )
    .0 == 200));

    // Rotated in place: the next handshake shows the new certificate.
    self_signed(certs.path());
    assert!(bx.reload(&config));
    assert!(bx.logs().contains("tls: re-read"), "{}", bx.logs());
    assert_eq!(curl(&["--cacert", new], &url), (200, "OK".into()));
    assert_eq!(
        curl(&["--cacert", old], &url).0,
        0,
        "old certificate still served"
    );

    // A broken key: logged, and the certificate in use stays.
    std::fs::write(certs.path().join("cert.key"), "not a key").unwrap();
    bx.reload(&config);
    let logs = bx.logs();
    assert!(
        logs.contains("still serving the previous certificate"),
        "{logs}"
    );
    assert!(logs.contains("cert.key"), "{logs}");
    assert_eq!(curl(&["--cacert", new], &url), (200, "OK".into()));
}

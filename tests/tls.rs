//! TLS termination and origination through the real binary.
#![cfg(feature = "tls")]

mod common;
mod tls_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use tls_util::*;

fn tls_server(leaf: &Leaf, lines: &[String], port: u16) -> String {
    config(
        port,
        "roundrobin",
        lines,
        &format!("protocol = \"tls\"\n{}", tls_section(leaf)),
    )
}

#[test]
fn terminates_tls_and_relays_to_a_plain_backend() {
    let pki = Pki::new();
    let leaf = pki.leaf("front", "DNS:front.example,IP:127.0.0.1");
    let backend = Backend::start("plain");
    let port = free_port();
    let _b = Betwixt::start_quiet(&tls_server(&leaf, &[backend.line()], port), &[port]);
    let client = client_config(&pki.ca);
    let mut s = tls_connect(port, "front.example", &client).expect("handshake");
    assert_eq!(peer_cert(&s), leaf_der(&leaf));
    let mut line = [0u8; 6];
    s.read_exact(&mut line).expect("greeting");
    assert_eq!(&line, b"plain\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo(&mut s, &big), big);
    assert_eq!(echo(&mut s, b"second"), b"second");
}

#[test]
fn openssl_s_client_through_termination() {
    let pki = Pki::new();
    let leaf = pki.leaf("front", "DNS:front.example,IP:127.0.0.1");
    let backend = Backend::start("viaopenssl");
    let port = free_port();
    let _b = Betwixt::start_quiet(&tls_server(&leaf, &[backend.line()], port), &[port]);
    let out = std::process::Command::new("timeout")
        .args(["10", "openssl", "s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-servername",
            "front.example",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&pki.ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("viaopenssl"),
        "stdout {stdout:?}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_plain_client_or_a_silent_one_is_closed() {
    let pki = Pki::new();
    let leaf = pki.leaf("front", "IP:127.0.0.1");
    let backend = Backend::start("plain");
    let port = free_port();
    let extra = format!(
        "protocol = \"tls\"\nclient_idle_timeout = \"600ms\"\n{}",
        tls_section(&leaf)
    );
    let b = Betwixt::start_quiet(
        &config(port, "roundrobin", &[backend.line()], &extra),
        &[port],
    );
    let mut s = connect_addr(([127, 0, 0, 1], port).into());
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"plain"), "plaintext reached the backend");
    let silent = connect_addr(([127, 0, 0, 1], port).into());
    let start = Instant::now();
    let mut one = [0u8; 1];
    let n = (&silent).read(&mut one).unwrap_or(0);
    assert_eq!(n, 0);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "{}",
        b.logs()
    );
}

#[test]
fn backends_tls_verifies_unless_ignore_verify() {
    let pki = Pki::new();
    let self_signed = pki.self_signed("selfsigned", "IP:127.0.0.1");
    let signed = pki.leaf("signed", "IP:127.0.0.1");
    let b_self = tls_backend("selfsigned", &self_signed);
    let b_signed = tls_backend("signed", &signed);
    let run = |addr: std::net::SocketAddr, section: &str| {
        let port = free_port();
        let extra =
            format!("backend_connection_retries = 0\n[servers.test.backends_tls]\n{section}\n");
        let b = Betwixt::start_quiet(
            &config(port, "roundrobin", &[addr.to_string()], &extra),
            &[port],
        );
        let got = who(port);
        (got, b.logs())
    };
    let (got, logs) = run(b_self, "ignore_verify = true");
    assert_eq!(got, "selfsigned", "{logs}");
    let (got, logs) = run(b_self, "ignore_verify = false");
    assert_eq!(got, "", "an unverifiable backend was used:\n{logs}");
    assert!(logs.contains("TLS handshake"), "{logs}");
    let ca = format!("root_ca_cert_path = \"{}\"", pki.ca.display());
    let (got, logs) = run(b_signed, &ca);
    assert_eq!(got, "signed", "{logs}");
    let (got, _) = run(b_self, &ca);
    assert_eq!(got, "");
}

#[test]
fn termination_and_origination_together() {
    let pki = Pki::new();
    let front = pki.leaf("front", "IP:127.0.0.1");
    let back = pki.leaf("back", "IP:127.0.0.1");
    let b_tls = tls_backend("both", &back);
    let port = free_port();
    let extra = format!(
        "protocol = \"tls\"\n{}[servers.test.backends_tls]\nroot_ca_cert_path = \"{}\"\n",
        tls_section(&front),
        pki.ca.display()
    );
    let _b = Betwixt::start_quiet(
        &config(port, "roundrobin", &[b_tls.to_string()], &extra),
        &[port],
    );
    let mut s = tls_connect(port, "127.0.0.1", &client_config(&pki.ca)).expect("handshake");
    let mut line = [0u8; 5];
    s.read_exact(&mut line).expect("greeting");
    assert_eq!(&line, b"both\n");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(echo(&mut s, &data), data);
}

#[test]
fn sighup_rereads_certificates_and_keeps_open_connections() {
    let pki = Pki::new();
    let first = pki.leaf("first", "IP:127.0.0.1");
    let second = pki.leaf("second", "IP:127.0.0.1");
    let live = Leaf {
        cert: pki.dir.path().join("live.pem"),
        key: pki.dir.path().join("live.key"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let backend = Backend::start("plain");
    let port = free_port();
    let cfg = tls_server(&live, &[backend.line()], port);
    let b = Betwixt::start_quiet(&cfg, &[port]);
    let client = client_config(&pki.ca);
    let mut open = tls_connect(port, "127.0.0.1", &client).expect("handshake");
    assert_eq!(peer_cert(&open), leaf_der(&first));
    let mut line = [0u8; 6];
    open.read_exact(&mut line).expect("greeting");
    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    assert!(b.reload(&cfg), "{}", b.logs());
    let fresh = tls_connect(port, "127.0.0.1", &client).expect("handshake after reload");
    assert_eq!(peer_cert(&fresh), leaf_der(&second));
    assert_eq!(echo(&mut open, b"still here"), b"still here");
    // A broken certificate file is a rejected reload; the old one stays.
    std::fs::write(&live.cert, "not a certificate").unwrap();
    assert!(!b.reload(&cfg));
    let again = tls_connect(port, "127.0.0.1", &client).expect("handshake after bad reload");
    assert_eq!(peer_cert(&again), leaf_der(&second));
}

#[test]
fn acme_and_legacy_ciphers_are_refused_at_startup() {
    let pki = Pki::new();
    let leaf = pki.leaf("front", "IP:127.0.0.1");
    let port = free_port();
    for (extra, expect) in [
        ("acme_hosts = [\"a.example\"]\n", "ACME is not supported"),
        ("ciphers = [\"TLS_RSA_WITH_RC4_128_SHA\"]\n", "legacy suite"),
        ("ciphers = [\"TLS_NOPE\"]\n", "is not one of"),
        ("max_version = \"tls1.1\"\n", "tls1.2 and tls1.3"),
    ] {
        let cfg = tls_server(&leaf, &["127.0.0.1:1".into()], port) + "";
        let cfg = cfg.replace(
            "[servers.test.tls]\n",
            &format!("[servers.test.tls]\n{extra}"),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, cfg).unwrap();
        let (code, out, err) = run_cli(&["-c", path.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(
            format!("{out}{err}").contains(expect),
            "{extra}: {out}{err}"
        );
    }
    let _ = TcpStream::connect(("127.0.0.1", port)).is_err();
}

/// `-t` reads certificate and key files as a start would: a key that does
/// not belong to the certificate, a missing or encrypted file, or a cipher
/// list that leaves no suite for the allowed versions fail the test (exit 2)
/// instead of passing it and then failing the start or the reload.
#[test]
fn config_test_reads_certificate_and_key_files() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a", "IP:127.0.0.1"), pki.leaf("b", "IP:127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let encrypted = dir.path().join("enc.key");
    let made = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-passout", "pass:secret", "-in"])
        .arg(&a.key)
        .arg("-out")
        .arg(&encrypted)
        .status()
        .expect("openssl pkcs8");
    assert!(made.success());
    let missing = dir.path().join("missing.pem");
    let backends_ca = format!(
        "[servers.test.backends_tls]\nroot_ca_cert_path = \"{}\"\n",
        missing.display()
    );
    let api_tls = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:2\"\n[api.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        a.cert.display(),
        b.key.display()
    );
    let test = |key: &std::path::Path, in_tls: &str, after: &str| {
        let leaf = Leaf {
            cert: a.cert.clone(),
            key: key.to_path_buf(),
        };
        let cfg = tls_server(&leaf, &["127.0.0.1:1".into()], 1).replace(
            "[servers.test.tls]\n",
            &format!("[servers.test.tls]\n{in_tls}"),
        ) + after;
        let path = dir.path().join("b.toml");
        std::fs::write(&path, cfg).unwrap();
        run_cli(&["-t", "-c", path.to_str().unwrap()])
    };
    let (code, out, err) = test(&a.key, "", "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configuration OK"));
    let only_tls13 = "ciphers = [\"TLS_AES_128_GCM_SHA256\"]\nmax_version = \"tls1.2\"\n";
    let bad = [
        (
            &b.key,
            "",
            "",
            "b.key: the private key does not belong to the certificate in ",
        ),
        (&missing, "", "", "missing.pem"),
        (&encrypted, "", "", "encrypted"),
        (
            &a.key,
            only_tls13,
            "",
            "servers.test.tls: no cipher in ciphers",
        ),
        (
            &a.key,
            "",
            backends_ca.as_str(),
            "servers.test.backends_tls: ",
        ),
        (&a.key, "", api_tls.as_str(), "api.tls: "),
    ];
    for (key, in_tls, after, expect) in bad {
        let (code, out, err) = test(key, in_tls, after);
        assert_eq!(code, 2, "{key:?} {in_tls} {after}: {out}{err}");
        assert!(!out.contains("configuration OK"), "{out}");
        assert!(err.contains(expect), "{expect:?} in {err}");
    }
}

//! Bounded fuzzing of PEM certificate and key files (any bytes give
//! certificates, a key or an error naming the file) and of TLS server
//! names (any host string).

use super::*;
use crate::fuzz;

#[test]
fn fuzz_pem_files() {
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUE3\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n\
               -----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.pem");
    fuzz::run(
        "pem",
        91,
        150,
        &[cert.as_bytes(), key.as_bytes()],
        |bytes| {
            std::fs::write(&path, bytes).expect("write");
            if let Err(e) = load_certs(&path) {
                assert!(e.starts_with(&path.display().to_string()), "{e}");
            }
            if let Err(e) = load_key(&path) {
                assert!(e.starts_with(&path.display().to_string()), "{e}");
            }
        },
    );
}

#[test]
fn fuzz_server_names() {
    let samples = [
        "a.example.test",
        "[::1]",
        "127.0.0.1",
        "xn--bcher-kva.example",
        "a..b",
    ];
    fuzz::run_str("server name", 92, 1000, &samples, |host| {
        let _ = server_name(host);
    });
}

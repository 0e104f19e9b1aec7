//! TLS helpers for integration tests: certificates made with the openssl
//! CLI (a CA and leaves signed by it), a rustls client, a TLS echo backend.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
}

pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every key here is a fresh, unencrypted P-256 key.
const NEW_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

#[path = "../common/pki.rs"]
mod pki;

/// Run openssl in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    if let Err(e) = pki::openssl(dir, args) {
        panic!("{e}");
    }
}

/// `openssl req -x509`: a self-signed certificate `pem` and its new key
/// `key` in `dir` for `subject`, valid 2 days; `extra` adds arguments.
fn req_x509(dir: &Path, subject: &str, extra: &[&str], key: &str, pem: &str) -> Result<(), String> {
    let args = [
        &["req", "-x509"][..],
        &NEW_KEY,
        &["-days", "2", "-subj", subject],
        extra,
        &["-keyout", key, "-out", pem],
    ]
    .concat();
    pki::openssl(dir, &args)
}

/// A self-signed certificate (CN `file`, the SANs e.g. "DNS:a.example,IP:127.0.0.1")
/// as `file`.pem and `file`.key in `dir`; `Err` when openssl is missing or fails
/// (callers that can do without it skip).
pub fn try_self_signed(dir: &Path, file: &str, sans: &str) -> Result<Leaf, String> {
    let (key, pem) = (format!("{file}.key"), format!("{file}.pem"));
    let san = format!("subjectAltName={sans}");
    req_x509(dir, &format!("/CN={file}"), &["-addext", &san], &key, &pem)?;
    Ok(Leaf {
        cert: dir.join(pem),
        key: dir.join(key),
    })
}

impl Pki {
    /// A fresh CA in a temp dir.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = req_x509(dir.path(), "/CN=betwixt test CA", &[], "ca.key", "ca.pem");
        made.unwrap_or_else(|e| panic!("{e}"));
        let ca = dir.path().join("ca.pem");
        Self { dir, ca }
    }

    /// A leaf named `file` for the SANs (e.g. "DNS:a.example,IP:127.0.0.1").
    pub fn leaf(&self, file: &str, sans: &str) -> Leaf {
        let d = self.dir.path();
        let ext = format!("{file}.ext");
        std::fs::write(
            d.join(&ext),
            format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("ext");
        let (key, csr, pem) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.pem"),
        );
        let cn = format!("/CN={file}");
        let request = [
            &["req", "-new"][..],
            &NEW_KEY,
            &["-subj", &cn, "-keyout", &key, "-out", &csr],
        ];
        openssl(d, &request.concat());
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
        Leaf {
            cert: d.join(pem),
            key: d.join(key),
        }
    }

    /// A self-signed certificate (not from the CA).
    pub fn self_signed(&self, file: &str, sans: &str) -> Leaf {
        try_self_signed(self.dir.path(), file, sans).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("pem")
        .map(|c| c.expect("cert"))
        .collect()
}

/// A client trusting `ca`.
pub fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect to 127.0.0.1:`port` and complete a handshake for `name`.
pub fn tls_connect(
    port: u16,
    name: &str,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<Client> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The first line the server sends.
pub fn greeting<S: Read>(s: S) -> String {
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line.trim().to_string()
}

/// Send `msg`, read back the same number of bytes.
pub fn echo<S: Read + Write>(s: &mut S, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write");
    s.flush().expect("flush");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("read echo");
    back
}

/// The subject CN of the server's leaf certificate, via its DER (crude: finds "CN=" text by
/// comparing with the known leaf file's DER).
pub fn peer_cert(s: &Client) -> Vec<u8> {
    s.conn.peer_certificates().expect("peer certs")[0].to_vec()
}

pub fn leaf_der(leaf: &Leaf) -> Vec<u8> {
    certs(&leaf.cert)[0].to_vec()
}

/// A server config presenting `leaf`, no client authentication.
pub fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs(&leaf.cert), key)
            .expect("server config"),
    )
}

/// A TLS echo backend: greets each connection with `NAME\n`, then echoes.
pub fn tls_backend(name: &str, leaf: &Leaf) -> SocketAddr {
    let config = server_config(leaf);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let name = name.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let (config, name) = (Arc::clone(&config), name.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, tcp);
                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A tls server section for betwixt.
pub fn tls_section(leaf: &Leaf) -> String {
    format!(
        "[servers.test.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    )
}

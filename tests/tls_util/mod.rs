//! TLS helpers for integration tests: certificates made with the openssl
//! CLI (a CA and leaves signed by it), a rustls client, a TLS echo backend.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
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

fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A fresh CA in a temp dir.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=betwixt test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            dir.path(),
        );
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
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={file}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
            d,
        );
        openssl(
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
            d,
        );
        Leaf {
            cert: d.join(pem),
            key: d.join(key),
        }
    }

    /// A self-signed certificate (not from the CA).
    pub fn self_signed(&self, file: &str, sans: &str) -> Leaf {
        let d = self.dir.path();
        let (key, pem) = (format!("{file}.key"), format!("{file}.pem"));
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={file}"),
                "-addext",
                &format!("subjectAltName={sans}"),
                "-keyout",
                &key,
                "-out",
                &pem,
            ],
            d,
        );
        Leaf {
            cert: d.join(pem),
            key: d.join(key),
        }
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

/// A TLS echo backend: greets each connection with `NAME\n`, then echoes.
pub fn tls_backend(name: &str, leaf: &Leaf) -> SocketAddr {
    let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs(&leaf.cert), key)
            .expect("server config"),
    );
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

//! HTTPS for the management API (`[api.tls]`): the TLS step of the API's
//! front ([`super::front`]), which relays the decrypted bytes to tiny_http.
//!
//! SIGHUP re-reads the certificate and key ([`reload`]) from the paths the
//! front started with, so a rotated certificate needs no restart; new
//! handshakes get it, open connections keep theirs.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::front::{HANDSHAKE_TIMEOUT, Upgrade};
use crate::config::CertPair;

/// The running front's certificate files and the acceptor made from them
/// (at most one API per process); [`reload`] replaces the acceptor.
static CURRENT: RwLock<Option<(CertPair, TlsAcceptor)>> = RwLock::new(None);

/// Re-read the running front's certificate and key. `None` when no TLS
/// front runs; on error the previous certificate stays in use.
pub fn reload() -> Option<Result<CertPair, String>> {
    let pair = current()?.0;
    Some(server_config(&pair).map(|config| {
        let acceptor = TlsAcceptor::from(config);
        *CURRENT.write().unwrap_or_else(|p| p.into_inner()) = Some((pair.clone(), acceptor));
        pair
    }))
}

fn current() -> Option<(CertPair, TlsAcceptor)> {
    CURRENT.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The acceptor for the next handshake (a cheap clone: an `Arc` inside).
fn acceptor() -> Option<TlsAcceptor> {
    let current = CURRENT.read().unwrap_or_else(|p| p.into_inner());
    current.as_ref().map(|(_, a)| a.clone())
}

/// A server configuration from `[api.tls]`; errors name the file at fault.
pub fn server_config(pair: &CertPair) -> Result<Arc<ServerConfig>, String> {
    let certs = crate::tls::load_certs(&pair.cert_path)?;
    let key = crate::tls::load_key(&pair.key_path)?;
    let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| crate::tls::pair_error(&pair.cert_path, &pair.key_path, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Load `[api.tls]` and start the API's front with TLS on `bind`. Returns
/// the unix listener for `tiny_http::Server::from_listener`.
pub fn front(bind: SocketAddr, pair: &CertPair) -> io::Result<UnixListener> {
    let config = server_config(pair).map_err(|e| io::Error::other(format!("api.tls: {e}")))?;
    *CURRENT.write().unwrap_or_else(|p| p.into_inner()) =
        Some((pair.clone(), TlsAcceptor::from(config)));
    super::front::start(bind, "api", Upgrade::Tls)
}

/// The TLS handshake of a new connection, bounded by [`HANDSHAKE_TIMEOUT`].
pub async fn handshake(tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    let acceptor = acceptor().ok_or_else(|| io::Error::other("no TLS certificate loaded"))?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let pair = CertPair {
            cert_path: "/nonexistent/cert.pem".into(),
            key_path: "/nonexistent/key.pem".into(),
        };
        let e = server_config(&pair).unwrap_err();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}

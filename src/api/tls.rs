//! HTTPS for the management API (`[api.tls]`): a small rustls front.
//!
//! tiny_http only listens on TCP or unix sockets and its own TLS features
//! (openssl, an old rustls) do not fit, so the API's tiny_http server
//! listens on a private abstract unix socket instead, and one thread runs a
//! current-thread tokio runtime that:
//!
//! * accepts TCP on `[api] bind`, at most [`MAX_CONNS`] at a time (more are
//!   closed at once);
//! * completes the TLS handshake within [`HANDSHAKE_TIMEOUT`] (a client
//!   speaking plain HTTP or stalling is closed; the API keeps serving);
//! * connects to the unix socket and copies bytes both ways until either
//!   side closes or nothing moves for [`IDLE_TIMEOUT`].
//!
//! SIGHUP re-reads the certificate and key ([`reload`]) from the paths the
//! front started with, so a rotated certificate needs no restart; new
//! handshakes get it, open connections keep theirs.
//!
//! The abstract socket has a random name and lives only in the daemon's
//! network namespace; what it serves is exactly what the TLS port serves
//! (the same Basic auth), so it opens nothing new to local processes.

use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::CertPair;
use crate::debug;

/// Concurrent TLS connections (handshaking or open); more are closed.
pub const MAX_CONNS: usize = 64;
/// A client must finish its handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection where no byte moves either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Bind `bind` (TCP) and a private unix socket for tiny_http; start the
/// front thread. Returns the unix listener for `tiny_http::Server::from_listener`.
pub fn front(bind: SocketAddr, pair: &CertPair) -> io::Result<UnixListener> {
    let config = server_config(pair).map_err(|e| io::Error::other(format!("api.tls: {e}")))?;
    let tcp = std::net::TcpListener::bind(bind)?;
    *CURRENT.write().unwrap_or_else(|p| p.into_inner()) =
        Some((pair.clone(), TlsAcceptor::from(config)));
    tcp.set_nonblocking(true)?;
    let (unix, addr) = private_unix()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("api-tls".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(tcp) {
                    Ok(l) => serve(l, addr).await,
                    Err(e) => crate::error!("api", "tls listener: {e}"),
                }
            })
        })?;
    Ok(unix)
}

/// A unix listener on a random abstract name (no file, no cleanup).
fn private_unix() -> io::Result<(UnixListener, UnixAddr)> {
    use std::hash::{BuildHasher, Hasher};
    let mut last = None;
    for _ in 0..4 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let name = format!("betwixt-api-{}-{:016x}", std::process::id(), h.finish());
        let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
        match UnixListener::bind_addr(&addr) {
            Ok(l) => return Ok((l, addr)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot bind a unix socket")))
}

async fn serve(listener: TcpListener, inner: UnixAddr) {
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    let inner = Arc::new(inner);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                debug!("api", "tls accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!("api", "{peer}: closed, {MAX_CONNS} TLS connections open");
            continue;
        };
        let Some(acceptor) = acceptor() else {
            return;
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, acceptor, &inner).await {
                debug!("api", "{peer}: {e}");
            }
            drop(slot);
        });
    }
}

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, inner: &UnixAddr) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    // A blocking connect cannot stall the runtime: tiny_http's accept thread
    // drains the backlog (128 or more), and at most MAX_CONNS (64) are ever pending.
    let std_unix = std::os::unix::net::UnixStream::connect_addr(inner)?;
    std_unix.set_nonblocking(true)?;
    let plain = UnixStream::from_std(std_unix)?;
    pump(tls, plain, IDLE_TIMEOUT).await
}

/// Copy both ways until both directions ended or `idle` passes with no
/// traffic. The client's EOF is passed on as a half-close.
pub async fn pump<A, B>(a: A, b: B, idle: Duration) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut abuf, mut bbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut a_open = true;
    loop {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r? {
                0 => {
                    a_open = false;
                    bw.shutdown().await?;
                }
                n => bw.write_all(&abuf[..n]).await?,
            },
            r = br.read(&mut bbuf) => match r? {
                0 => break,
                n => {
                    aw.write_all(&bbuf[..n]).await?;
                    aw.flush().await?;
                }
            },
            () = tokio::time::sleep(idle) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle"));
            }
        }
    }
    aw.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_copies_both_ways_and_passes_half_close() {
        let (client, front_a) = tokio::io::duplex(64);
        let (front_b, server) = tokio::io::duplex(64);
        let task = tokio::spawn(pump(front_a, front_b, Duration::from_secs(5)));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        cw.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        cw.shutdown().await.unwrap();
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"GET / HTTP/1.0\r\n\r\n");
        let writer = tokio::spawn(async move {
            sw.write_all(&[7u8; 100_000]).await.unwrap();
            sw.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        assert_eq!(back.len(), 100_000);
        writer.await.unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn pump_gives_up_when_idle() {
        let (_client, front_a) = tokio::io::duplex(64);
        let (front_b, _server) = tokio::io::duplex(64);
        let r = pump(front_a, front_b, Duration::from_millis(50)).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

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

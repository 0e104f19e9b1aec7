//! The API's and metrics' TCP front: tiny_http never faces the network.
//!
//! tiny_http starts a thread per connection and has no idle timeout, so a
//! client could hold any number of threads, and it only listens on TCP or
//! unix sockets (its TLS options do not fit). So each tiny_http server
//! listens on a private abstract unix socket, and one thread per listener
//! runs a current-thread tokio runtime that:
//!
//! * accepts TCP on the configured `bind`, at most [`MAX_CONNS`] at a time
//!   ([`MAX_TLS_CONNS`] with TLS, whose connections cost more); more are
//!   closed at once;
//! * with `[api.tls]`, completes the TLS handshake within
//!   [`HANDSHAKE_TIMEOUT`] (a client speaking plain HTTP or stalling is
//!   closed; the API keeps serving) — see [`super::tls`];
//! * connects to the unix socket and copies bytes both ways until either
//!   side closes or nothing moves for [`IDLE_TIMEOUT`].
//!
//! The abstract socket has a random name and lives only in the daemon's
//! network namespace; what it serves is exactly what the TCP port serves
//! (the same Basic auth), so it opens nothing new to local processes.

use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;

use super::guard::Guard;
use super::http::BODY_LIMIT;
use crate::debug;

/// Concurrent plain connections per listener; more are closed. Each costs
/// a tiny_http thread, so this also bounds the threads.
pub const MAX_CONNS: usize = 256;
/// Concurrent TLS connections (handshaking or open; about 40 KB each).
pub const MAX_TLS_CONNS: usize = 64;
/// A TLS client must finish its handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection where no byte moves either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the front does with a connection before relaying it.
#[derive(Clone, Copy)]
pub enum Upgrade {
    Plain,
    /// TLS with the API's current certificate ([`super::tls`]).
    #[cfg(feature = "tls")]
    Tls,
}

impl Upgrade {
    fn max_conns(self) -> usize {
        match self {
            Self::Plain => MAX_CONNS,
            #[cfg(feature = "tls")]
            Self::Tls => MAX_TLS_CONNS,
        }
    }
}

/// Bind `bind` (TCP) and a private unix socket; start the front thread
/// (named `name`). Returns the unix listener for
/// `tiny_http::Server::from_listener`.
pub fn start(bind: SocketAddr, name: &str, upgrade: Upgrade) -> io::Result<UnixListener> {
    start_capped(bind, name, upgrade, upgrade.max_conns())
}

/// [`start`] with at most `max` connections at once instead of the
/// upgrade's default.
pub fn start_capped(
    bind: SocketAddr,
    name: &str,
    upgrade: Upgrade,
    max: usize,
) -> io::Result<UnixListener> {
    let tcp = std::net::TcpListener::bind(bind)?;
    tcp.set_nonblocking(true)?;
    let (unix, addr) = private_unix()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let component = name.to_string();
    std::thread::Builder::new()
        .name(format!("{name}-front"))
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(tcp) {
                    Ok(l) => serve(l, addr, upgrade, max, &component).await,
                    Err(e) => crate::error!(&component, "listener: {e}"),
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

async fn serve(listener: TcpListener, inner: UnixAddr, upgrade: Upgrade, max: usize, name: &str) {
    let slots = Arc::new(Semaphore::new(max));
    let inner = Arc::new(inner);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                debug!(name, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(name, "{peer}: closed, {max} connections open");
            continue;
        };
        let inner = Arc::clone(&inner);
        let component = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, upgrade, &inner).await {
                debug!(&component, "{peer}: {e}");
            }
            drop(slot);
        });
    }
}

async fn connection(tcp: TcpStream, upgrade: Upgrade, inner: &UnixAddr) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    match upgrade {
        Upgrade::Plain => pump(tcp, connect(inner)?, IDLE_TIMEOUT).await,
        #[cfg(feature = "tls")]
        Upgrade::Tls => {
            let tls = super::tls::handshake(tcp).await?;
            pump(tls, connect(inner)?, IDLE_TIMEOUT).await
        }
    }
}

/// A blocking connect: tiny_http's accept thread takes each connection at
/// once (a thread each), so its backlog (128) drains as fast as we connect.
fn connect(inner: &UnixAddr) -> io::Result<UnixStream> {
    let std_unix = std::os::unix::net::UnixStream::connect_addr(inner)?;
    std_unix.set_nonblocking(true)?;
    UnixStream::from_std(std_unix)
}

/// Copy both ways until both directions ended or `idle` passes with no
/// traffic. The client's EOF is passed on as a half-close. What the client
/// sends goes through a [`Guard`]: a refused request is answered after the
/// answers already on their way, and the connection closes.
pub async fn pump<A, B>(a: A, b: B, idle: Duration) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut abuf, mut bbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut guard = Guard::new(BODY_LIMIT);
    let mut framed = Vec::with_capacity(abuf.len());
    let mut refused = None;
    let mut a_open = true;
    loop {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r? {
                0 => {
                    a_open = false;
                    bw.shutdown().await?;
                }
                n => {
                    framed.clear();
                    let verdict = guard.feed(&abuf[..n], &mut framed);
                    bw.write_all(&framed).await?;
                    if let Err(refusal) = verdict {
                        refused = Some(refusal);
                        a_open = false;
                        bw.shutdown().await?;
                    }
                }
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
    if let Some(refusal) = refused {
        aw.write_all(&refusal.response()).await?;
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
}

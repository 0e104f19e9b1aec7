//! TCP listeners: accept, admit, elect and connect, then relay.
//!
//! Life of a connection: `accept` -> access rules -> server `max_connections`
//! slot -> with `[sni]`, peek the ClientHello's name -> (`protocol = "tls"`
//! or `[backends_tls]`: handed to [`super::tls`] from here) -> elect a
//! backend (its slot is reserved at election) -> connect with timeout,
//! retrying other backends on failure -> optional PROXY header ->
//! [`session::run`] (the sockmap fast path or the splice relay) until both
//! sides are done, a timeout, or a kill.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::on_wake::OnWake;
use super::session::{self, Conn};
use super::splice::send;
use super::tls::Edge;
use super::{proxy_protocol, sni};
use crate::config::ProxyProtocolVersion;
use crate::state::{Backend, ConnGuard, Elected, Plan, ServerRuntime, Target};
use crate::{debug, warn};

/// Listen backlog for every server.
const BACKLOG: i32 = 1024;
/// "no backend available" lines (per plan) and "connect to ... failed"
/// warnings (per backend): at most one per this.
const FLOOD_LOG_EVERY: Duration = Duration::from_secs(5);
/// Longest pause of the accept loop when the process is out of descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(500);

/// Bind a listening socket (SO_REUSEADDR, dual-stack on `[::]`).
/// `TCP_NODELAY` is set on the listener: Linux copies it to every accepted
/// socket, which saves a `setsockopt` per connection.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accept until `stop` turns true. Running out of descriptors (EMFILE,
/// ENFILE) or memory pauses the loop with a growing backoff instead of
/// ending it; other per-connection accept errors are skipped.
pub async fn serve(
    listener: TcpListener,
    server: Arc<ServerRuntime>,
    edge: Arc<Edge>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::ZERO;
    // Made once and polled only when it is woken (see `OnWake`), not on
    // every accept.
    let mut stopped = std::pin::pin!(OnWake::new(stop.wait_for(|s| *s)));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stopped => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::ZERO;
                let guard = server.tracker.enter();
                // Boxed: the task then holds a pointer, not the whole state
                // machine (several KB), which tokio copies on every stage
                // change of the task (three per connection).
                tokio::spawn(Box::pin(handle(
                    stream,
                    peer,
                    Arc::clone(&server),
                    Arc::clone(&edge),
                    guard,
                )));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                warn!(
                    &server.name,
                    "accept: {e}; pausing {} ms",
                    backoff.as_millis()
                );
                tokio::time::sleep(backoff).await;
            }
            Err(e) => debug!(&server.name, "accept: {e}"),
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A slot in the server's `max_connections`, given back on drop.
pub struct ServerSlot(pub Arc<ServerRuntime>);

impl Drop for ServerSlot {
    fn drop(&mut self) {
        self.0.counters.release();
    }
}

async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    server: Arc<ServerRuntime>,
    edge: Arc<Edge>,
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))] mut guard: ConnGuard,
) {
    let plan = server.plan();
    let cfg = &plan.config;
    if let Some(acl) = &cfg.access
        && !acl.allows(peer.ip())
    {
        server.counters.refused.fetch_add(1, Relaxed);
        debug!(&server.name, "{peer}: denied by access rules");
        return;
    }
    if !server.counters.try_reserve(cfg.max_connections) {
        server.counters.refused.fetch_add(1, Relaxed);
        limit_reached(&plan, &server.name, peer);
        return;
    }
    let slot = ServerSlot(Arc::clone(&server));
    server.counters.total.fetch_add(1, Relaxed);
    // TCP_NODELAY comes from the listener (see `bind`).
    let host = match &cfg.sni {
        Some(s) => match sni::peek_hello(&client, s.read_timeout).await {
            Ok(host) => host,
            Err(e) => {
                server.counters.refused.fetch_add(1, Relaxed);
                debug!(&server.name, "{peer}: SNI: {e}");
                return;
            }
        },
        None => None,
    };
    let ctx = edge.get();
    if ctx.active() {
        #[cfg(feature = "tls")]
        super::tls::handle(client, peer, host, &server, &plan, &ctx, &mut guard).await;
        return;
    }
    let Some((backend, elected)) = connect(&plan, &server.name, peer, host.as_deref()).await else {
        server.counters.refused.fetch_add(1, Relaxed);
        return;
    };
    let b = &plan.backends[elected.index];
    if let Err(e) = send_proxy_header(&plan, &client, &backend, peer).await {
        debug!(&server.name, "{peer} -> {}: PROXY header: {e}", b.key);
        return;
    }
    let closer = elected.state.closer();
    let conn = Conn {
        slot,
        plan,
        peer,
        guard,
        elected,
        closer,
    };
    session::run(conn, client, backend).await;
}

/// Elect and connect, trying up to `backend_connection_retries` other
/// backends when connecting fails.
async fn connect(
    plan: &Plan,
    server: &str,
    peer: SocketAddr,
    host: Option<&str>,
) -> Option<(TcpStream, Elected)> {
    let timeout = plan.config.backend_connection_timeout;
    elect_and_open(plan, server, peer, host, |b| dial(&b.target, timeout)).await
}

/// Elect a backend and `open` it; on failure count a refusal on it and
/// elect another, up to `backend_connection_retries` times (shared by the
/// plain and the TLS paths, which differ only in how they open).
pub(super) async fn elect_and_open<'p, S, F, Fut>(
    plan: &'p Plan,
    server: &str,
    peer: SocketAddr,
    host: Option<&str>,
    mut open: F,
) -> Option<(S, Elected)>
where
    F: FnMut(&'p Backend) -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let mut tried = Vec::new();
    for _ in 0..=plan.config.backend_connection_retries {
        let Some(elected) = plan.elect_sni(peer.ip(), &tried, host) else {
            // After failed connects (each logged) there was a backend: only
            // none left to try, which "no backend available" would deny.
            if tried.is_empty() {
                no_backend(plan, server, peer, host);
            }
            return None;
        };
        let b = &plan.backends[elected.index];
        match open(b).await {
            Ok(stream) => {
                elected.state.counters.total.fetch_add(1, Relaxed);
                return Some((stream, elected));
            }
            Err(e) => {
                elected.state.counters.refused.fetch_add(1, Relaxed);
                connect_failed(&elected.state.connect_log, server, peer, &b.key, &e);
                tried.push(elected.index);
            }
        }
    }
    None
}

/// Whether a warning that every connection could cause may be written
/// now, through `throttle` (at most one per [`FLOOD_LOG_EVERY`]): `Some`
/// with the note of the lines left out since the last one.
pub(super) fn flood_pass(throttle: &crate::log::Throttle) -> Option<String> {
    let every = FLOOD_LOG_EVERY.as_millis() as u64;
    throttle
        .pass(super::pump::now_ms(), every)
        .map(crate::log::skipped_note)
}

/// Log a failed connect: a warning at most every [`FLOOD_LOG_EVERY`]
/// per backend, a debug line otherwise.
fn connect_failed(
    log: &crate::log::Throttle,
    server: &str,
    peer: SocketAddr,
    key: &str,
    e: &io::Error,
) {
    match flood_pass(log) {
        Some(more) => warn!(server, "{peer}: connect to {key} failed: {e}{more}"),
        None => debug!(server, "{peer}: connect to {key} failed: {e}"),
    }
}

/// Log that no backend could be elected, at most every
/// [`FLOOD_LOG_EVERY`] per plan (a flood would write a line each).
pub(super) fn no_backend(plan: &Plan, server: &str, peer: SocketAddr, host: Option<&str>) {
    if let Some(more) = flood_pass(&plan.no_backend_log) {
        let sni = host.map(|h| format!(" (sni {h})")).unwrap_or_default();
        warn!(server, "{peer}: no backend available{sni}{more}");
    }
}

/// Log that the server's `max_connections` refused a client, at most every
/// [`FLOOD_LOG_EVERY`] per plan, as for [`no_backend`].
fn limit_reached(plan: &Plan, server: &str, peer: SocketAddr) {
    if let Some(more) = flood_pass(&plan.limit_log) {
        let max = plan.config.max_connections;
        warn!(
            server,
            "{peer}: closed: max_connections ({max}) reached{more}"
        );
    }
}

/// Connect to a backend (`TCP_NODELAY` set), trying each address a name
/// resolves to in turn (names through the process-wide cache,
/// [`crate::resolve`]; the wait for a lookup counts against `timeout`).
pub(super) async fn dial(target: &Target, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let connect = async {
        match target {
            Target::Addr(addr) => connect_to(*addr).await,
            Target::Name(host, port) => {
                let mut last = None;
                for addr in crate::resolve::socket_addrs(host, *port).await? {
                    match connect_to(addr).await {
                        Ok(stream) => return Ok(stream),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"))
                }))
            }
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?,
        None => connect.await,
    }
}

/// Connect without waiting for a wake-up when the handshake completed
/// within `connect()` itself, as it does on loopback (tokio's
/// `TcpStream::connect` always waits for the reactor to report it).
async fn connect_to(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    // Set before the handshake: the relay's first send must not wait on Nagle.
    let _ = socket.set_tcp_nodelay(true);
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    match stream.peer_addr() {
        Ok(_) => return Ok(stream),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        Err(e) => return Err(e),
    }
    // Still in progress, or failed (a failure reports writable too).
    stream.writable().await?;
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

async fn send_proxy_header(
    plan: &Plan,
    client: &TcpStream,
    backend: &TcpStream,
    peer: SocketAddr,
) -> io::Result<()> {
    let Some(version) = plan.config.proxy_protocol else {
        return Ok(());
    };
    write_proxy_header(backend, version, peer, client.local_addr()?).await
}

/// Write a PROXY header for `peer` -> `local` on a fresh backend connection.
pub(super) async fn write_proxy_header(
    backend: &TcpStream,
    version: ProxyProtocolVersion,
    peer: SocketAddr,
    local: SocketAddr,
) -> io::Result<()> {
    let header = proxy_protocol::header(version, peer, local);
    let mut rest: &[u8] = &header;
    // Try before waiting: a fresh connection is writable before tokio has
    // seen it so. A raw send does not touch tokio's readiness, hence the
    // loop below uses `try_write`, which clears it on EAGAIN.
    match send(backend.as_raw_fd(), rest) {
        Ok(n) => rest = &rest[n..],
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    while !rest.is_empty() {
        backend.writable().await?;
        match backend.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

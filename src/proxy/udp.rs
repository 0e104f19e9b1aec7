//! UDP servers: sessions keyed by client address.
//!
//! One listening socket per server. The first datagram from an unknown
//! client address checks the `access` rules (every datagram does), takes a
//! session slot (`udp.max_sessions`, lowered to fit the descriptor limit),
//! elects a backend (any balancer) and opens one *connected* UDP socket to
//! it; later datagrams of that client go out on that socket. A task per
//! session reads the backend's replies and sends them back through the
//! listening socket, so they leave from the address the client contacted:
//! on a wildcard bind (`0.0.0.0`, `[::]`) the datagram's destination address
//! is read with `IP_PKTINFO` / `IPV6_PKTINFO` and the replies carry it as
//! their source ([`super::udp_pktinfo`]). A session keeps the destination of
//! its first datagram.
//!
//! Why one socket per session: a backend answers to the source address it
//! saw, so the number of sessions open at the same time to one backend is
//! bounded by the number of local ports we send from; sharing sockets would
//! only move that bound, and would need a demultiplexing table on top. So
//! the bound is made explicit instead: the session cap is kept below the
//! process's RLIMIT_NOFILE (minus a reserve for listeners, TCP connections
//! and checks), and a datagram beyond the cap is dropped and counted as
//! refused — never an EMFILE storm. Memory per session: about 0.7 KiB in
//! user space (map entry, `Session`, its task and socket registration; no
//! receive buffer: replies are read into one per-thread 64 KiB buffer), plus
//! the kernel's socket (~1 KiB, more only while datagrams are queued).
//!
//! A session ends when [`Limits::end`] says so: `client_idle_timeout` since
//! the last client datagram, `backend_idle_timeout` since the last reply (or
//! the start), on a socket error (ICMP port unreachable), or when killed
//! (drain). After `max_requests` requests, or `max_responses` replies, the
//! session is *detached*: the next datagram of that client starts a new
//! session (`max_requests = 1`: every datagram is balanced on its own), while
//! the detached one still relays replies until its reply limits end it:
//! `max_responses` reached and a reply for each request, or the idle
//! timeouts (without `backend_idle_timeout` and `client_idle_timeout`,
//! after [`DETACHED_WAIT`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};

use super::on_wake::OnWake;
use super::pump::now_ms;
pub use super::udp_limits::{DETACHED_WAIT, Limits, NofileCache, Seen, Verdict, session_cap};
use super::udp_pktinfo::{self as pktinfo, Local};
use crate::state::{ConnGuard, Elected, ServerRuntime, Target};
use crate::{debug, warn};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    static REPLY_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; MAX_DATAGRAM].into_boxed_slice());
}

/// Bind the listening socket (SO_REUSEADDR, dual-stack on `[::]`; on a
/// wildcard address, each datagram's destination is reported so replies
/// leave from it). With `transparent`, check now that the kernel lets us use
/// IP_TRANSPARENT.
pub fn bind(addr: SocketAddr, transparent: bool) -> io::Result<UdpSocket> {
    if transparent {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            None,
        )?;
        set_transparent(&probe, addr.is_ipv6()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("udp.transparent needs CAP_NET_ADMIN or CAP_NET_RAW (IP_TRANSPARENT): {e}"),
            )
        })?;
    }
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if addr.ip().is_unspecified() {
        pktinfo::enable(&socket, addr.is_ipv6())?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn set_transparent(s: &socket2::Socket, v6: bool) -> io::Result<()> {
    if v6 {
        s.set_ip_transparent_v6(true)
    } else {
        s.set_ip_transparent_v4(true)
    }
}

#[allow(
    clippy::useless_conversion,
    reason = "rlim_t is u32 on 32-bit targets (armv7), u64 elsewhere"
)]
fn nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(u64::from(lim.rlim_cur))
}

/// One client's session.
struct Session {
    client: SocketAddr,
    /// The address the client contacted (wildcard binds only): replies leave from it.
    local: Option<Local>,
    /// The listening socket is AF_INET6.
    listener_v6: bool,
    socket: UdpSocket,
    elected: Elected,
    requests: AtomicU64,
    last_client: AtomicU64,
    detached: AtomicBool,
    /// Wakes the session task when the listener changed something it waits on.
    poke: Notify,
}

/// A session's key: the client, and on a wildcard bind the address it
/// contacted (one client talking to two of the host's addresses has two
/// sessions, each replying from its own address).
type Key = (SocketAddr, Option<IpAddr>);

fn key(client: SocketAddr, local: Option<Local>) -> Key {
    (client, local.map(|l| l.addr))
}

impl Session {
    fn key(&self) -> Key {
        key(self.client, self.local)
    }
}

type Table = Arc<Mutex<HashMap<Key, Arc<Session>>>>;

fn lock(t: &Table) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Session>>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Receive until `stop` turns true; sessions then run on until they end or
/// the drain kills them.
pub async fn serve(
    listener: UdpSocket,
    server: Arc<ServerRuntime>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = Arc::new(listener);
    let table: Table = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let fd = listener.as_raw_fd();
    let mut front = Front {
        v6: listener.local_addr().is_ok_and(|a| a.is_ipv6()),
        socket: listener,
        table,
        nofile: NofileCache::default(),
    };
    // Made once, polled only when woken (see `OnWake`), not per datagram.
    let mut stopped = std::pin::pin!(OnWake::new(stop.wait_for(|s| *s)));
    loop {
        let (n, peer, local) = tokio::select! {
            biased;
            _ = &mut stopped => return,
            r = front.socket.async_io(Interest::READABLE, || pktinfo::recv(fd, &mut buf)) => match r {
                Ok(r) => r,
                Err(e) => {
                    debug!(&server.name, "recv: {e}");
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let plan = server.plan();
        if let Some(acl) = &plan.config.access
            && !acl.allows(peer.ip())
        {
            server.counters.refused.fetch_add(1, Relaxed);
            continue;
        }
        let existing = lock(&front.table).get(&key(peer, local)).cloned();
        let session = match existing {
            Some(s) => s,
            None => match open(&server, &mut front, (peer, local)) {
                Some(s) => s,
                None => {
                    server.counters.refused.fetch_add(1, Relaxed);
                    continue;
                }
            },
        };
        let max_requests = plan.config.udp.as_ref().map_or(0, |u| u.max_requests);
        forward(&server, &front.table, &session, datagram, max_requests);
    }
}

/// The listening side, shared by every session of a server.
struct Front {
    socket: Arc<UdpSocket>,
    /// The listening socket is AF_INET6 (read once, not per session).
    v6: bool,
    table: Table,
    nofile: NofileCache,
}

/// Send one client datagram on the session's socket.
fn forward(
    server: &ServerRuntime,
    table: &Table,
    s: &Arc<Session>,
    datagram: &[u8],
    max_requests: u64,
) {
    s.last_client.store(now_ms(), Relaxed);
    // Counted before the send, so the session never sees a reply before
    // the request it answers (it ends when it owes no reply).
    let requests = s.requests.fetch_add(1, Relaxed) + 1;
    // Raw sends: tokio's `try_send` reports WouldBlock until the reactor has
    // seen the socket writable once, which would drop a session's first datagram.
    match socket2::SockRef::from(&s.socket).send(datagram) {
        Ok(n) => {
            server.counters.add_tx(n as u64);
            s.elected.state.counters.add_tx(n as u64);
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => debug!(&server.name, "{} -> backend: {e}", s.client),
    }
    if max_requests > 0 && requests >= max_requests {
        detach(table, s);
        // A detached session's deadline may move earlier: re-read it.
        s.poke.notify_one();
    }
}

/// Take the session out of the table (if it is still the one there).
fn detach(table: &Table, s: &Arc<Session>) {
    s.detached.store(true, Relaxed);
    let (mut t, key) = (lock(table), s.key());
    if t.get(&key).is_some_and(|cur| Arc::ptr_eq(cur, s)) {
        t.remove(&key);
    }
}

/// Admit a new session: slot, election, socket, task.
fn open(
    server: &Arc<ServerRuntime>,
    front: &mut Front,
    (peer, local): (SocketAddr, Option<Local>),
) -> Option<Arc<Session>> {
    let plan = server.plan();
    let udp = plan.config.udp.as_ref()?;
    let cap = session_cap(udp.max_sessions, front.nofile.get(now_ms(), nofile));
    if !server.counters.try_reserve(cap) {
        if let Some(more) = super::tcp::flood_pass(&plan.limit_log) {
            warn!(
                &server.name,
                "{peer}: {cap} udp sessions open (udp.max_sessions, descriptor limit); dropping new clients{more}"
            );
        }
        return None;
    }
    let slot = SessionSlot(Arc::clone(server));
    let Some(elected) = plan.elect(peer.ip(), &[]) else {
        super::tcp::no_backend(&plan, &server.name, peer, None);
        return None;
    };
    let backend = &plan.backends[elected.index];
    let socket = match backend_socket(&backend.target, peer, udp.transparent) {
        Ok(s) => s,
        Err(e) => {
            elected.state.counters.refused.fetch_add(1, Relaxed);
            warn!(&server.name, "{peer}: socket to {}: {e}", backend.key);
            return None;
        }
    };
    server.counters.total.fetch_add(1, Relaxed);
    elected.state.counters.total.fetch_add(1, Relaxed);
    let session = Arc::new(Session {
        client: peer,
        local,
        listener_v6: front.v6,
        socket,
        elected,
        requests: AtomicU64::new(0),
        last_client: AtomicU64::new(now_ms()),
        detached: AtomicBool::new(false),
        poke: Notify::new(),
    });
    lock(&front.table).insert(session.key(), Arc::clone(&session));
    let limits = Limits::of(&plan.config, udp);
    let guard = server.tracker.enter();
    // Boxed for the same reason as a TCP connection's task (`tcp::serve`).
    tokio::spawn(Box::pin(run(
        Arc::clone(&session),
        Arc::clone(server),
        Arc::clone(&front.socket),
        Arc::clone(&front.table),
        limits,
        (slot, guard),
    )));
    Some(session)
}

/// A server session slot, given back on drop.
struct SessionSlot(Arc<ServerRuntime>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.counters.release();
    }
}

fn backend_socket(target: &Target, peer: SocketAddr, transparent: bool) -> io::Result<UdpSocket> {
    let Target::Addr(addr) = target else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "udp backends need an IP address",
        ));
    };
    // Non-blocking from the start: one syscall fewer per session than
    // `set_nonblocking` (fcntl get + set).
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(*addr),
        socket2::Type::DGRAM.nonblocking(),
        None,
    )?;
    if transparent && peer.is_ipv4() == addr.is_ipv4() {
        set_transparent(&socket, addr.is_ipv6())?;
        socket.set_reuse_address(true)?;
        socket.bind(&peer.into())?;
    }
    socket.connect(&(*addr).into())?;
    UdpSocket::from_std(socket.into())
}

/// Relay the backend's replies to the client until the session ends.
async fn run(
    s: Arc<Session>,
    server: Arc<ServerRuntime>,
    listener: Arc<UdpSocket>,
    table: Table,
    limits: Limits,
    held: (SessionSlot, ConnGuard),
) {
    let (_slot, mut guard) = held;
    let mut seen = Seen {
        last_client: s.last_client.load(Relaxed),
        last_backend: now_ms(),
        requests: 0,
        responses: 0,
        detached: false,
    };
    // Kill, backend close and a socket error: made once, polled only when
    // woken (OnWake). An ICMP error (port unreachable) makes the socket
    // report EPOLLERR but not readable, so it needs its own waiter.
    let mut ended = std::pin::pin!(OnWake::new(async {
        tokio::select! {
            biased;
            _ = guard.kill.wait_for(|k| *k) => "killed",
            () = s.elected.state.closed() => "backend closed",
            _ = s.socket.ready(Interest::ERROR) => "backend error",
        }
    }));
    // One timer, re-armed lazily: activity only moves deadlines later, so it
    // is reset when it fired (the loop then re-reads the limits) or when a
    // deadline moved earlier (detach), not for every datagram.
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    let mut armed: Option<u64> = None;
    let mut poked = std::pin::pin!(s.poke.notified());
    let why = loop {
        seen.last_client = s.last_client.load(Relaxed);
        seen.requests = s.requests.load(Relaxed);
        seen.detached = s.detached.load(Relaxed);
        let now = now_ms();
        let at = match limits.end(&seen, now) {
            Verdict::End(why) => break why,
            Verdict::WaitUntil(at) => at,
        };
        if armed.is_none_or(|a| at < a) {
            let wait = at.saturating_sub(now).clamp(1, 86_400_000);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
            timer.as_mut().reset(deadline);
            armed = Some(at);
        }
        tokio::select! {
            biased;
            why = &mut ended => break why,
            r = std::future::poll_fn(|cx| s.socket.poll_recv_ready(cx)) => {
                if let Err(e) = r {
                    break io_reason(&e);
                }
                match relay_reply(&s, &listener, &server) {
                    Ok(true) => {
                        seen.responses += 1;
                        seen.last_backend = now_ms();
                        if limits.full(&seen) && !seen.detached {
                            // New requests go to a new session; this one
                            // still relays the replies it owes.
                            detach(&table, &s);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        debug!(&server.name, "{} <- {}: {e}", s.client, s.elected.index);
                        break "backend error";
                    }
                }
            }
            () = &mut timer => armed = None,
            () = &mut poked => poked.set(s.poke.notified()),
        }
    };
    detach(&table, &s);
    debug!(&server.name, "{}: udp session ended ({why})", s.client);
}

fn io_reason(_: &io::Error) -> &'static str {
    "backend error"
}

/// Read one reply (if any) and send it to the client. `Ok(false)`: nothing to read.
fn relay_reply(s: &Session, listener: &UdpSocket, server: &ServerRuntime) -> io::Result<bool> {
    REPLY_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let n = match s.socket.try_recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        let fd = listener.as_raw_fd();
        match pktinfo::send(fd, s.listener_v6, &buf[..n], s.client, s.local.as_ref()) {
            Ok(sent) => {
                server.counters.add_rx(sent as u64);
                s.elected.state.counters.add_rx(sent as u64);
            }
            Err(e) => debug!(&server.name, "-> {}: {e}", s.client),
        }
        Ok(true)
    })
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;

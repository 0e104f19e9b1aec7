//! A connection relayed by the sockmap fast path ([`super::sockmap`]).
//!
//! After connect (and the PROXY header) [`run`] gates the pair: from then on
//! the kernel moves the bytes, and this task only watches for EOF and errors
//! (a private epoll set with `EPOLLRDHUP` only, so the redirected data does
//! not wake it), kills and idle timeouts. When gating fails the connection
//! is handed back for the normal relay ([`super::pump`]).
//!
//! - Half-close: a side's FIN reaches userspace as EOF (TCP marks the
//!   socket read-shut; the verdict drops the empty skb, which the psock
//!   worker would take for a broken pipe). The other socket gets `shutdown(SHUT_WR)` only once the
//!   verdict has run over every byte received before the FIN ([`drained`]:
//!   the FIN wakes this task before the bytes that came with it are moved)
//!   and the other socket has taken all of them ([`flushed`]); both polled
//!   from every [`super::sockmap::FLUSH_POLL`] backing off to every
//!   [`super::sockmap::FLUSH_POLL_MAX`]. The redirected bytes wait in the
//!   destination's psock backlog, and a shutdown before they left would cut
//!   them off (the backlog's send then fails with EPIPE).
//! - Bytes passed up instead of redirected (only when a redirect fails) are
//!   read at EOF, an error or a hang-up (readability is not watched) and
//!   sent on by userspace, after the same flush. That never stalls a live
//!   exchange: the redirect fails only when the peer's cookie is not in
//!   `socks`, and a live peer always is. Both sockets enter `socks` before
//!   either enters `gate`; a full map fails gating (`gate` never holds more
//!   than `socks`); and a socket leaves `socks` only by `release` or close
//!   (at the end), or when the kernel moves it to TCP_CLOSE: a reset or a
//!   timeout (the pair then ends on its error), or both its FINs done, and
//!   its own FIN is sent only after the source's EOF with every byte
//!   before it moved, so no byte can follow.
//! - Statistics and idle timeouts come from the BPF pair counters, read
//!   every [`super::sockmap::COUNTER_POLL`] and at each idle deadline: a
//!   side is idle when the counters did not move (in either direction) for
//!   its timeout. Activity is stamped when a read sees the counters move,
//!   so a timeout fires up to one poll period late.
//! - The end (both FINs passed on, an error, a kill, a timeout) takes the
//!   pair out of the maps and closes both sockets. Gated connections are
//!   never parked.

use std::io;
use std::net::TcpStream as StdStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

use super::pump::{End, idle_ms_left, now_ms};
use super::session::Conn;
use super::sockmap::{self, PairCookies, Tally, drained, flushed, next_poll};
use super::sockmap_bpf::{GateError, Loaded};
use super::splice::{recv, send, shutdown_write};
use crate::debug;
use crate::metrics::Counters;

/// Most bytes held for a destination that has not flushed yet; reading the
/// source stops there until they are sent.
const PENDING_MAX: usize = 256 * 1024;
/// After a half-done gating, time for a verdict that is still running on
/// another CPU to finish (and count what it moved).
const SETTLE: Duration = Duration::from_millis(5);
/// How long a failed gating may wait for bytes the kernel already moved.
const UNDO_WAIT_MS: u64 = 10_000;

type Back = (Conn, TcpStream, TcpStream);

/// Relay `conn` through the fast path when its server asks for it and the
/// pair can be gated. `Some` gives the connection back for the normal relay.
pub async fn run(mut conn: Conn, client: TcpStream, backend: TcpStream) -> Option<Back> {
    if !conn.plan.config.sockmap {
        return Some((conn, client, backend));
    }
    let Some(fast) = sockmap::loaded() else {
        return Some((conn, client, backend));
    };
    let fds = [client.as_raw_fd(), backend.as_raw_fd()];
    let (cookies, base) = match gate_pair(fast, fds, || {}).await {
        Gated::On(cookies, base) => (cookies, base),
        Gated::Fallback(why) => return fallback(conn, client, backend, &why),
        Gated::Failed(why) => {
            conn.log_end(&Err(io::Error::other(format!("sockmap: {why}"))), false);
            return None;
        }
    };
    let key = conn.plan.backends[conn.elected.index].key.clone();
    debug!(&conn.slot.0.name, "{} -> {key}: gated (sockmap)", conn.peer);
    let end = match (client.into_std(), backend.into_std()) {
        (Ok(c), Ok(b)) => relay(&mut conn, fast, cookies, [c, b], base).await,
        (Err(e), _) | (_, Err(e)) => {
            fast.release(cookies);
            Err(e)
        }
    };
    conn.log_end(&end, false);
    None
}

/// How gating a pair went.
enum Gated {
    /// The kernel relays the pair: its cookies and each socket's `queued`
    /// at gating time.
    On(PairCookies, [u64; 2]),
    /// The pair is out of every map and every byte the kernel moved left:
    /// relay it in userspace.
    Fallback(String),
    /// Bytes the kernel moved did not leave in time: end the connection.
    Failed(String),
}

/// Gate the pair `fds` (client, backend); `between` as in [`Loaded::gate`].
async fn gate_pair(fast: &Loaded, fds: [RawFd; 2], between: impl FnOnce()) -> Gated {
    let prepared = cookie(fds[0])
        .and_then(|c| Ok(PairCookies([c, cookie(fds[1])?])))
        .and_then(|c| Ok((c, [queued(fds[0])?, queued(fds[1])?])));
    let (cookies, base) = match prepared {
        Ok(p) => p,
        Err(e) => return Gated::Fallback(e.to_string()),
    };
    match fast.gate(cookies, fds, between) {
        Ok(()) => Gated::On(cookies, base),
        Err(GateError::Undone(why)) => Gated::Fallback(why),
        Err(GateError::Partial(why)) => {
            // Bytes of the client may have gone to the backend's psock: let
            // them leave before the backend is taken out of the maps.
            tokio::time::sleep(SETTLE).await;
            let moved = fast.moved(cookies)[0];
            let done = wait_flushed(fds[1], base[1], moved).await;
            fast.release(cookies);
            match done {
                true => Gated::Fallback(why),
                false => Gated::Failed(why),
            }
        }
    }
}

fn fallback(conn: Conn, client: TcpStream, backend: TcpStream, why: &str) -> Option<Back> {
    let key = &conn.plan.backends[conn.elected.index].key;
    debug!(
        &conn.slot.0.name,
        "{} -> {key}: sockmap: {why}; relaying in userspace", conn.peer
    );
    Some((conn, client, backend))
}

async fn wait_flushed(fd: RawFd, base: u64, owed: u64) -> bool {
    let start = now_ms();
    while now_ms().saturating_sub(start) < UNDO_WAIT_MS {
        match queued(fd) {
            Ok(q) if flushed(q, base, owed) => return true,
            Ok(_) => tokio::time::sleep(sockmap::FLUSH_POLL).await,
            Err(_) => return false,
        }
    }
    false
}

/// One direction: bytes of socket `i` go to socket `1 - i`.
#[derive(Default)]
struct Dir {
    eof: bool,
    /// Bytes passed up to userspace, to send once the destination flushed.
    pending: Vec<u8>,
    shut: bool,
}

impl Dir {
    fn waits(&self) -> bool {
        !self.shut && (self.eof || !self.pending.is_empty())
    }
}

struct Pair<'a> {
    fast: &'static Loaded,
    cookies: PairCookies,
    socks: [StdStream; 2],
    /// Each socket's `queued` at gating time.
    base: [u64; 2],
    /// Bytes userspace wrote to each socket since.
    written: [u64; 2],
    /// Bytes userspace read from each socket since (passed up).
    read: [u64; 2],
    tally: Tally,
    dirs: [Dir; 2],
    /// Server and backend counters.
    counters: [&'a Counters; 2],
    /// Last time the counters moved (both sides: a byte crosses both).
    active: u64,
    /// Looks in a row that found a direction still waiting for a flush.
    looks: u32,
}

async fn relay(
    conn: &mut Conn,
    fast: &'static Loaded,
    cookies: PairCookies,
    socks: [StdStream; 2],
    base: [u64; 2],
) -> io::Result<End> {
    let [client_idle, backend_idle] = conn.idle_limits();
    let counters = [&conn.slot.0.counters, &conn.elected.state.counters];
    let mut pair = Pair {
        fast,
        cookies,
        socks,
        base,
        written: [0; 2],
        read: [0; 2],
        tally: Tally::default(),
        dirs: [Dir::default(), Dir::default()],
        counters,
        active: now_ms(),
        looks: 0,
    };
    let (kill, closer) = (&mut conn.guard.kill, &mut conn.closer);
    let mut kill = std::pin::pin!(async {
        tokio::select! {
            _ = kill.wait_for(|k| *k) => {}
            _ = closer.changed() => {}
        }
    });
    let end = async {
        let events = Events::new(&pair.socks)?;
        loop {
            pair.progress()?;
            if pair.dirs.iter().all(|d| d.shut) {
                return Ok(End::Done);
            }
            pair.count();
            let now = now_ms();
            let waits = pair.dirs.iter().any(Dir::waits);
            let mut wait = next_poll(waits, pair.looks);
            pair.looks = if waits {
                pair.looks.saturating_add(1)
            } else {
                0
            };
            for (limit, end) in [
                (client_idle, End::ClientIdle),
                (backend_idle, End::BackendIdle),
            ] {
                let Some(limit) = limit else { continue };
                match idle_ms_left(now, pair.active, limit) {
                    0 => return Ok(end),
                    // Look at the counters again at the deadline.
                    left => wait = wait.min(Duration::from_millis(left)),
                }
            }
            tokio::select! {
                biased;
                _ = &mut kill => return Ok(End::Killed),
                ready = events.wait() => {
                    for i in ready? {
                        pair.read_src(i)?;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
    .await;
    pair.count();
    fast.release(cookies);
    end
}

impl Pair<'_> {
    /// Add the bytes the kernel moved since the last look to the statistics.
    fn count(&mut self) {
        let delta = self.tally.advance(self.fast.moved(self.cookies));
        if delta != [0, 0] {
            self.active = now_ms();
        }
        for c in self.counters {
            c.add_tx(delta[0]);
            c.add_rx(delta[1]);
        }
    }

    /// Read socket `i` after EPOLLRDHUP/ERR/HUP: EOF, an error, or bytes the
    /// verdict passed up.
    fn read_src(&mut self, i: usize) -> io::Result<()> {
        if let Some(e) = self.socks[i].take_error()? {
            return Err(e);
        }
        let fd = self.socks[i].as_raw_fd();
        let dir = &mut self.dirs[i];
        let mut buf = [0u8; 16 * 1024];
        while !dir.eof && dir.pending.len() < PENDING_MAX {
            match recv(fd, &mut buf) {
                Ok(0) => dir.eof = true,
                Ok(n) => {
                    dir.pending.extend_from_slice(&buf[..n]);
                    self.read[i] += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Pass on what each direction has (bytes passed up, then its FIN) once
    /// the destination took every redirected byte.
    fn progress(&mut self) -> io::Result<()> {
        for i in 0..2 {
            if !self.dirs[i].waits() {
                continue;
            }
            let dst = 1 - i;
            let fd = self.socks[dst].as_raw_fd();
            // The FIN wakes this task before the verdict has run over the
            // bytes that came with it: first every received byte must have
            // been moved (or read), then the destination must have taken them.
            let received = received(self.socks[i].as_raw_fd())?;
            let moved = self.fast.moved(self.cookies)[i];
            if !drained(received, self.dirs[i].eof, moved, self.read[i]) {
                continue;
            }
            let owed = moved + self.written[dst];
            if !flushed(queued(fd)?, self.base[dst], owed) {
                continue;
            }
            let dir = &mut self.dirs[i];
            while !dir.pending.is_empty() {
                match send(fd, &dir.pending) {
                    Ok(n) => {
                        dir.pending.drain(..n);
                        self.written[dst] += n as u64;
                        for c in self.counters {
                            if i == 0 {
                                c.add_tx(n as u64)
                            } else {
                                c.add_rx(n as u64)
                            }
                        }
                        self.active = now_ms();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if dir.pending.is_empty() && dir.eof {
                shutdown_write(fd)?;
                dir.shut = true;
            } else if !dir.eof {
                // Stopped reading at PENDING_MAX: go on.
                self.read_src(i)?;
            }
        }
        Ok(())
    }
}

/// A private epoll set of the pair's sockets (`EPOLLRDHUP`, edge-triggered;
/// errors and hang-ups are always reported), itself watched by tokio.
struct Events(AsyncFd<OwnedFd>);

impl Events {
    fn new(socks: &[StdStream; 2]) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor owned by nobody else.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        for (i, s) in socks.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are open; `ev` is a valid event.
            let rc = unsafe {
                libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev)
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: the AsyncFd owns `ep`, which stays open and the same
        // descriptor until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(ep, Interest::READABLE) };
        Ok(Self(fd.map_err(|e| e.into_parts().1)?))
    }

    /// The sockets (0 client, 1 backend) with events.
    async fn wait(&self) -> io::Result<Vec<usize>> {
        loop {
            let mut guard = self.0.readable().await?;
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: the array is valid for writes of its length.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), 4, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                guard.clear_ready();
                continue;
            }
            let mut ready: Vec<usize> = events[..n as usize]
                .iter()
                .map(|e| e.u64 as usize)
                .filter(|i| *i < 2)
                .collect();
            ready.dedup();
            return Ok(ready);
        }
    }
}

/// `SO_COOKIE`: the key the BPF maps use for this socket.
fn cookie(fd: RawFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut value as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// Every byte ever written into the socket: `tcpi_bytes_acked` plus the
/// send queue (`SIOCOUTQ`: unacked and unsent).
fn queued(fd: RawFd) -> io::Result<u64> {
    let info = tcp_info(fd)?;
    let mut outq: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut outq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.tcpi_bytes_acked.wrapping_add(outq.max(0) as u64))
}

/// Every byte the socket received in order (`tcpi_bytes_received`, its
/// FIN included).
fn received(fd: RawFd) -> io::Result<u64> {
    Ok(tcp_info(fd)?.tcpi_bytes_received)
}

#[cfg(test)]
#[path = "gated_tests.rs"]
mod tests;

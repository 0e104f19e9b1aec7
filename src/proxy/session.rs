//! A connected client/backend pair: relay, park when idle, resume.
//!
//! [`run`] relays with [`Relay::run_parkable`]. When both directions have
//! waited for input for [`PARK_AFTER`] with nothing in flight, the task ends
//! and the connection moves to the parking lot ([`super::park`]): the sockets
//! leave tokio's reactor and the task's memory is freed. The lot spawns
//! [`resume`] when either socket turns readable (data, FIN or error), and the
//! relay goes on from the same activity stamps, so idle timeouts still count
//! from the last byte.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::park::{self, Parked};
use super::pump::{End, Relay, now_ms};
use super::tcp::ServerSlot;
use crate::debug;
use crate::state::{ConnGuard, Elected, Plan};

/// How long both directions must have waited for input before parking.
/// Short enough that a mostly idle connection spends its life parked; a
/// park + resume costs a handful of syscalls and one task spawn.
pub const PARK_AFTER: Duration = Duration::from_millis(500);

/// Period of [`anchor_timers`]; shorter than [`PARK_AFTER`].
const ANCHOR_EVERY: Duration = Duration::from_millis(400);

/// Keep a timer pending in the runtime at all times (spawned once).
///
/// tokio's timer driver interrupts its own `epoll_wait` (an eventfd
/// `write`, then one more `epoll_wait`) whenever a new timer is due before
/// the earliest one it knew of when it last parked, and always when it knew
/// of none. On a quiet runtime (one connection at a time) every relay's
/// park timer paid that round trip. With this timer pending, the earliest
/// known deadline is at most `ANCHOR_EVERY` away, before any new park timer,
/// so relays register theirs without waking the reactor. It costs 2.5
/// wakeups per second.
pub async fn anchor_timers() {
    loop {
        tokio::time::sleep(ANCHOR_EVERY).await;
    }
}

/// Everything one connection holds besides its sockets; kept whole while
/// parked. Dropping it releases the server and backend slots and tells the
/// tracker.
pub struct Conn {
    pub slot: ServerSlot,
    pub plan: Arc<Plan>,
    pub peer: SocketAddr,
    pub guard: ConnGuard,
    pub elected: Elected,
    /// The backend's close signal (`on_down = "close"`), subscribed when the
    /// relay first started so that a close while parked is not missed.
    pub closer: watch::Receiver<u64>,
}

impl Conn {
    /// Drain kill or backend close requested (checked by the lot's sweep).
    pub fn killed(&self) -> bool {
        *self.guard.kill.borrow() || self.closer.has_changed().unwrap_or(true)
    }

    /// Client and backend idle timeouts.
    pub fn idle_limits(&self) -> [Option<Duration>; 2] {
        let cfg = &self.plan.config;
        [cfg.client_idle_timeout, cfg.backend_idle_timeout]
    }

    /// Log how the connection ended.
    pub fn log_end(&self, end: &io::Result<End>, parked: bool) {
        let server = &self.slot.0.name;
        let key = &self.plan.backends[self.elected.index].key;
        let peer = self.peer;
        let how = if parked { " (parked)" } else { "" };
        match end {
            Ok(End::Done) => debug!(server, "{peer} -> {key}: closed{how}"),
            Ok(end) => debug!(server, "{peer} -> {key}: {end:?}{how}"),
            Err(e) => debug!(server, "{peer} -> {key}: {e}{how}"),
        }
    }
}

/// Relay a fresh connection until it ends or parks; with `sockmap = true`
/// first try the in-kernel fast path ([`super::gated`]).
pub async fn run(conn: Conn, client: TcpStream, backend: TcpStream) {
    // Boxed, and only entered with `sockmap = true`: the fast path's state
    // neither grows nor slows every other connection's task.
    #[cfg(all(feature = "ebpf", betwixt_ebpf_obj))]
    let (conn, client, backend) = match conn.plan.config.sockmap {
        true => match Box::pin(super::gated::run(conn, client, backend)).await {
            Some(back) => back,
            None => return,
        },
        false => (conn, client, backend),
    };
    let now = now_ms();
    relay_loop(conn, client, backend, [now, now]).await;
}

/// Continue a parked connection (spawned by the lot on readiness).
pub async fn resume(p: Parked) {
    let (conn, client, backend, seen) = p.into_parts();
    match (stream(client), stream(backend)) {
        (Ok(c), Ok(b)) => relay_loop(conn, c, b, seen).await,
        (Err(e), _) | (_, Err(e)) => conn.log_end(&Err(e), true),
    }
}

fn stream(fd: OwnedFd) -> io::Result<TcpStream> {
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

async fn relay_loop(mut conn: Conn, client: TcpStream, backend: TcpStream, seen: [u64; 2]) {
    let (end, seen) = relay(&mut conn, &client, &backend, seen, Some(PARK_AFTER)).await;
    if !matches!(end, Ok(End::Park)) {
        return conn.log_end(&end, false);
    }
    let parked = match Parked::new(conn, client, backend, seen) {
        Ok(p) => p,
        Err((conn, e)) => return conn.log_end(&Err(e), false),
    };
    let Some(back) = park::park(parked) else {
        return;
    };
    // The lot is unavailable (no epoll, no thread): keep the task.
    let (mut conn, client, backend, seen) = back.into_parts();
    let (Ok(client), Ok(backend)) = (stream(client), stream(backend)) else {
        return;
    };
    let (end, _) = relay(&mut conn, &client, &backend, seen, None).await;
    conn.log_end(&end, false);
}

async fn relay(
    conn: &mut Conn,
    client: &TcpStream,
    backend: &TcpStream,
    seen: [u64; 2],
    park_after: Option<Duration>,
) -> (io::Result<End>, [u64; 2]) {
    let [client_idle, backend_idle] = conn.idle_limits();
    let relay = Relay {
        client,
        backend,
        client_idle,
        backend_idle,
        counters: [&conn.slot.0.counters, &conn.elected.state.counters],
        low_rtt_tuning: conn.plan.config.low_rtt_tuning,
    };
    let (kill, closer) = (&mut conn.guard.kill, &mut conn.closer);
    let kill = async {
        tokio::select! {
            _ = kill.wait_for(|k| *k) => {}
            _ = closer.changed() => {}
        }
    };
    relay.run_parkable(kill, seen, park_after).await
}

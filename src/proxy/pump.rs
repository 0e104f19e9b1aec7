//! Relaying one TCP connection: two directions, half-close, idle timeouts.
//!
//! Each direction starts in **copy** mode: `recv` into a per-thread scratch
//! buffer and `send` straight on, so a small request costs two syscalls and
//! no pipe. When one read fills the scratch buffer the direction switches to
//! **splice** mode: it takes a pipe from the pool and moves bytes
//! socket -> pipe -> socket inside the kernel, splicing out right after
//! splicing in. When reads get small again the pipe goes back to the pool.
//!
//! Readiness comes from tokio (`async_io` retries on `EAGAIN` and clears the
//! cached readiness), so both sockets stay registered once in the reactor.
//!
//! Half-close: when one side sends FIN, everything already read is flushed,
//! then the other side gets `shutdown(SHUT_WR)`, and the opposite direction
//! keeps running until its own FIN. The connection ends when both directions
//! have ended, on any error, on an idle timeout or when killed. The second
//! FIN is passed on by the `close` that follows (its socket was read to EOF,
//! so closing sends a FIN, not a reset): one syscall less per connection.
//!
//! Parking: [`Relay::run_parkable`] also ends with [`End::Park`] once both
//! directions have waited for input for the park delay; every read wait
//! marks its direction as waiting, and a wait holds nothing that dropping it
//! could lose (see [`super::session`]).
//!
//! Low-RTT tuning: the first switch to splice mode may change the two
//! sockets' buffers and congestion control ([`super::tune`]).
//!
//! Idle timeouts: a side (client or backend) is idle when no byte crossed its
//! socket, in either direction, for its timeout. A busy one-way stream keeps
//! both sides busy, so it is never cut.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::on_wake::OnWake;
use super::splice::{Pipe, recv, send, send_more, shutdown_write};
use super::tune;
use crate::metrics::Counters;

/// Copy-mode buffer, shared by every connection of a worker thread.
const SCRATCH: usize = 16 * 1024;
/// In splice mode, a read smaller than this sends the direction back to copy mode.
const SMALL_READ: usize = 4 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// Milliseconds on the coarse monotonic clock: cheap activity stamps (one
/// clock tick, 1-10 ms, of resolution is plenty for idle timeouts and
/// parking, and it skips the TSC read of the precise clock).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; this clock always exists
    // on Linux >= 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// [`now_ms`] stamps trail the real clock by up to one tick of the coarse
/// clock (4 ms at HZ=250, 10 ms at HZ=100), so the difference of two stamps
/// can exceed the real time between them by that much. TCP idle timeouts
/// wait this much longer, so that they never fire early.
pub const COARSE_SLACK_MS: u64 = 10;

/// Milliseconds before a side last active at `stamp` has been idle for
/// `limit` at `now` (0: it has), slack included.
pub fn idle_ms_left(now: u64, stamp: u64, limit: Duration) -> u64 {
    let limit = (limit.as_millis() as u64).saturating_add(COARSE_SLACK_MS);
    limit.saturating_sub(now.saturating_sub(stamp))
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    /// Both sides closed their write side.
    Done,
    ClientIdle,
    BackendIdle,
    Killed,
    /// Both directions waited for input longer than the park delay with
    /// nothing in flight: the caller may move the sockets to the parking lot
    /// (only from [`Relay::run_parkable`]).
    Park,
}

/// Per-side settings and where the bytes are counted.
pub struct Relay<'a> {
    pub client: &'a TcpStream,
    pub backend: &'a TcpStream,
    pub client_idle: Option<Duration>,
    pub backend_idle: Option<Duration>,
    /// Server and backend counters: client->backend bytes count as `tx`, the reverse as `rx`.
    pub counters: [&'a Counters; 2],
    /// Apply [`super::tune`] when a direction starts bulk mode.
    pub low_rtt_tuning: bool,
}

/// Last time a byte crossed each side's socket.
pub(crate) struct Activity {
    pub client: AtomicU64,
    pub backend: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        let now = now_ms();
        Self {
            client: AtomicU64::new(now),
            backend: AtomicU64::new(now),
        }
    }
}

#[derive(Clone, Copy)]
enum Way {
    Up,
    Down,
}

struct Flow<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    way: Way,
    seen: &'a Activity,
    counters: [&'a Counters; 2],
    /// True while the flow waits for its source with nothing in flight (the
    /// only state in which dropping it loses nothing).
    waiting: &'a AtomicBool,
    /// Still to tune on the first switch to bulk mode (see [`super::tune`]).
    untuned: AtomicBool,
    /// Shared by both flows: [`ENDED`], [`CLIENT_READ`], [`CLIENT_READ_AGAIN`].
    shared: &'a AtomicU8,
}

/// Set by the first direction to pass its FIN on.
const ENDED: u8 = 1;
/// The client has been read from.
const CLIENT_READ: u8 = 2;
/// ... more than once. Until then the connection may be a single exchange
/// (HTTP/1.0 style, health probes) whose reply ends with the backend's FIN:
/// the backend's first [`REPLY_READS`] short reads are read to their end
/// (see [`copy_once`]), which costs at most that many reads per connection
/// when the FIN does not come.
const CLIENT_READ_AGAIN: u8 = 4;
/// Reads of the backend are counted in the bits above the flags, up to
/// [`REPLY_READS`].
const BACKEND_READ: u8 = 8;
const REPLY_READS: u8 = 4;

impl Relay<'_> {
    /// Relay until the connection ends. `kill` resolves to close it at once.
    pub async fn run(self, kill: impl std::future::Future<Output = ()>) -> io::Result<End> {
        let now = now_ms();
        self.run_parkable(kill, [now, now], None).await.0
    }

    /// [`Self::run`] starting from the activity stamps `seen` (client,
    /// backend; [`now_ms`] times), which may also end with [`End::Park`] once
    /// both directions waited `park_after` for input. Returns the stamps for
    /// the next run of the same connection.
    pub async fn run_parkable(
        self,
        kill: impl std::future::Future<Output = ()>,
        seen: [u64; 2],
        park_after: Option<Duration>,
    ) -> (io::Result<End>, [u64; 2]) {
        let seen = Activity {
            client: AtomicU64::new(seen[0]),
            backend: AtomicU64::new(seen[1]),
        };
        let waiting = [AtomicBool::new(false), AtomicBool::new(false)];
        let shared = AtomicU8::new(0);
        let flow = |src, dst, way, waiting| Flow {
            src,
            dst,
            way,
            seen: &seen,
            counters: self.counters,
            waiting,
            untuned: AtomicBool::new(self.low_rtt_tuning),
            shared: &shared,
        };
        let up = flow(self.client, self.backend, Way::Up, &waiting[0]);
        let down = flow(self.backend, self.client, Way::Down, &waiting[1]);
        let both = async { tokio::try_join!(up.forward(), down.forward()).map(|_| End::Done) };
        // Timers and kill signals rarely fire: polled only on their own
        // wake-ups, not on every burst of bytes (see `OnWake`). Each future
        // is made inside the block so that its state is stored once.
        let kill = std::pin::pin!(kill);
        let control = OnWake::new(async {
            tokio::select! {
                biased;
                _ = kill => End::Killed,
                end = watch_idle(&seen, self.client_idle, self.backend_idle) => end,
                () = watch_park(&seen, &waiting, park_after) => End::Park,
            }
        });
        let end = tokio::select! {
            biased;
            r = both => r,
            end = control => Ok(end),
        };
        (end, [seen.client.load(Relaxed), seen.backend.load(Relaxed)])
    }
}

/// Milliseconds until a connection may park (0: now). It may when both
/// directions wait for input and no byte crossed either socket since
/// `quiet_since` + `after` (the latest activity stamp, or the start of this
/// run: a resumed connection first gets a chance to read what woke it).
pub fn park_wait(now: u64, quiet_since: u64, waiting: [bool; 2], after: u64) -> u64 {
    let after = after.max(1);
    let quiet = now.saturating_sub(quiet_since);
    if quiet < after {
        after - quiet
    } else if waiting[0] && waiting[1] {
        0
    } else {
        // Busy (a send waiting for the peer): look again one delay later.
        after
    }
}

/// Resolves when the connection may park; never without a park delay.
async fn watch_park(seen: &Activity, waiting: &[AtomicBool; 2], after: Option<Duration>) {
    let Some(after) = after else {
        return std::future::pending().await;
    };
    let after = after.as_millis() as u64;
    let start = now_ms();
    loop {
        let last = seen.client.load(Relaxed).max(seen.backend.load(Relaxed));
        let flags = [waiting[0].load(Relaxed), waiting[1].load(Relaxed)];
        match park_wait(now_ms(), last.max(start), flags, after) {
            0 => return,
            wait => tokio::time::sleep(Duration::from_millis(wait)).await,
        }
    }
}

/// Resolves when a side has been idle for its timeout; never without timeouts.
pub(crate) async fn watch_idle(
    seen: &Activity,
    client: Option<Duration>,
    backend: Option<Duration>,
) -> End {
    let limits = [
        (client, &seen.client, End::ClientIdle),
        (backend, &seen.backend, End::BackendIdle),
    ];
    if limits.iter().all(|(t, _, _)| t.is_none()) {
        return std::future::pending().await;
    }
    loop {
        let now = now_ms();
        let mut wait = u64::MAX;
        for (limit, stamp, end) in &limits {
            let Some(limit) = limit else { continue };
            match idle_ms_left(now, stamp.load(Relaxed), *limit) {
                0 => return *end,
                left => wait = wait.min(left),
            }
        }
        tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
    }
}

/// What one copy-mode read did.
enum Copied {
    Eof,
    /// Bytes read, bytes already sent, the unsent tail (if any), and
    /// whether the source's FIN came right after them.
    Read(usize, usize, Option<Vec<u8>>, bool),
    /// The destination failed while we wrote to it.
    DstFailed(io::Error),
}

impl Flow<'_> {
    fn touch_src(&self) {
        self.stamp(true);
    }

    fn touch_dst(&self) {
        self.stamp(false);
    }

    fn stamp(&self, src: bool) {
        let client_side = matches!((self.way, src), (Way::Up, true) | (Way::Down, false));
        let slot = if client_side {
            &self.seen.client
        } else {
            &self.seen.backend
        };
        slot.store(now_ms(), Relaxed);
    }

    fn count(&self, n: usize) {
        for c in self.counters {
            match self.way {
                Way::Up => c.add_tx(n as u64),
                Way::Down => c.add_rx(n as u64),
            }
        }
        self.touch_dst();
    }

    /// Move bytes src -> dst until src's FIN has been passed on.
    async fn forward(&self) -> io::Result<()> {
        let mut bulk = false;
        loop {
            // Wait here, before a pipe is taken, so that an idle direction
            // holds no pipe and may be parked.
            waiting_for(self.src, self.waiting).await?;
            let more = if bulk {
                self.splice_round(&mut bulk).await?
            } else {
                self.copy_round(&mut bulk).await?
            };
            if !more {
                // The second FIN needs no shutdown: the relay ends now and
                // closing a socket whose input was read to EOF sends it.
                if self.shared.fetch_or(ENDED, Relaxed) & ENDED != 0 {
                    return Ok(());
                }
                return shutdown_write(self.dst.as_raw_fd());
            }
        }
    }

    /// Whether a short read should go on to the source's end (see
    /// [`CLIENT_READ_AGAIN`]).
    fn reply_to_end(&self) -> bool {
        let s = self.shared.load(Relaxed);
        matches!(self.way, Way::Down)
            && s & CLIENT_READ_AGAIN == 0
            && s / BACKEND_READ < REPLY_READS
    }

    /// Count a read of this flow's source. Both flows run in one task, so a
    /// load and a store suffice; once both counts are settled (every read of
    /// a keep-alive connection after its second request) nothing is stored.
    fn counted_read(&self) {
        let s = self.shared.load(Relaxed);
        let next = match self.way {
            Way::Up if s & CLIENT_READ != 0 => s | CLIENT_READ_AGAIN,
            Way::Up => s | CLIENT_READ,
            Way::Down if s / BACKEND_READ < REPLY_READS => s + BACKEND_READ,
            Way::Down => s,
        };
        if next != s {
            self.shared.store(next, Relaxed);
        }
    }

    /// One copy-mode read and its sends. Returns false at EOF.
    async fn copy_round(&self, bulk: &mut bool) -> io::Result<bool> {
        let (src, dst) = (self.src.as_raw_fd(), self.dst.as_raw_fd());
        let copied = read_with(self.src, self.waiting, || {
            copy_once(src, dst, self.reply_to_end()).map(|c| {
                let drained = matches!(c, Copied::Read(n, ..) if n < SCRATCH);
                (c, drained)
            })
        })
        .await?;
        match copied {
            Copied::Eof => Ok(false),
            Copied::DstFailed(e) => Err(e),
            Copied::Read(read, sent, tail, eof) => {
                self.counted_read();
                self.touch_src();
                if sent > 0 {
                    self.count(sent);
                }
                *bulk = read == SCRATCH;
                if *bulk && self.untuned.swap(false, Relaxed) {
                    // Best effort: an untuned connection still relays.
                    let _ = tune::apply(self.src, self.dst);
                }
                if let Some(tail) = tail {
                    self.send_all(&tail).await?;
                }
                Ok(!eof)
            }
        }
    }

    /// Send a buffer completely, waiting for the destination as needed.
    async fn send_all(&self, mut buf: &[u8]) -> io::Result<()> {
        let dst = self.dst.as_raw_fd();
        while !buf.is_empty() {
            let n = self
                .dst
                .async_io(Interest::WRITABLE, || send(dst, buf))
                .await?;
            self.count(n);
            buf = &buf[n..];
        }
        Ok(())
    }

    /// One splice-mode fill of the pipe and its drain. Returns false at EOF.
    async fn splice_round(&self, bulk: &mut bool) -> io::Result<bool> {
        self.counted_read();
        let pipe = Pipe::take()?;
        let src = self.src.as_raw_fd();
        let filled = read_with(self.src, self.waiting, || {
            let n = pipe.fill_from(src, pipe.capacity)?;
            Ok((n, n > 0 && n < pipe.capacity))
        })
        .await?;
        if filled == 0 {
            pipe.give_back();
            return Ok(false);
        }
        self.touch_src();
        // On error the pipe may still hold bytes: it is dropped, never pooled.
        self.drain(&pipe, filled).await?;
        pipe.give_back();
        *bulk = filled >= SMALL_READ;
        Ok(true)
    }

    async fn drain(&self, pipe: &Pipe, mut pending: usize) -> io::Result<()> {
        let dst: RawFd = self.dst.as_raw_fd();
        while pending > 0 {
            let n = self
                .dst
                .async_io(Interest::WRITABLE, || pipe.drain_to(dst, pending))
                .await?;
            pending -= n;
            self.count(n);
        }
        Ok(())
    }
}

/// Wait until `stream` is readable, with `waiting` set meanwhile (nothing
/// has been read, so the wait may be dropped for parking). Readiness can be
/// spurious (the read then finds nothing), so every read wait sets it.
///
/// `poll_read_ready` keeps one waker per socket and direction, where a
/// `readable()` future joins and leaves a locked waiter list on every wait;
/// each socket has exactly one reader, this relay.
async fn waiting_for(stream: &TcpStream, waiting: &AtomicBool) -> io::Result<()> {
    waiting.store(true, Relaxed);
    let ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await;
    waiting.store(false, Relaxed);
    ready
}

/// Run a read-side syscall under tokio's readiness. `op` returns its result
/// and whether it drained the socket (a short read). A drained socket's
/// readiness is cleared right away, which saves the read that would only
/// return EAGAIN before the next wait. This is race-free: tokio clears only
/// the readiness it had seen before `op` ran, so an edge that arrives
/// meanwhile is kept, and it never clears a seen FIN.
async fn read_with<T>(
    stream: &TcpStream,
    waiting: &AtomicBool,
    mut op: impl FnMut() -> io::Result<(T, bool)>,
) -> io::Result<T> {
    loop {
        waiting_for(stream, waiting).await?;
        let mut out = None;
        let polled = stream.try_io(Interest::READABLE, || {
            let (value, drained) = op()?;
            out = Some(value);
            if drained {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match (out, polled) {
            (Some(value), _) => return Ok(value),
            (None, Err(e)) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            (None, _) => {}
        }
    }
}

/// Read once into the scratch buffer and send what the destination takes now.
/// Destination errors are returned inside `Copied` so that `async_io` does not
/// mistake a full destination for an empty source.
///
/// With `to_end`, a short read is followed by a second one, as nginx and
/// HAProxy always do. When it finds the FIN, the bytes are sent with
/// `MSG_MORE` and leave together with the FIN that the caller's `shutdown`
/// adds: one segment less for the destination, and its peer learns of the
/// end one wake-up earlier. An error of that second read is not reported:
/// the bytes already read still go out, and the next read finds the end.
fn copy_once(src: RawFd, dst: RawFd, to_end: bool) -> io::Result<Copied> {
    SCRATCH_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let mut read = recv(src, &mut buf)?;
        if read == 0 {
            return Ok(Copied::Eof);
        }
        let mut eof = false;
        if to_end && read < buf.len() {
            match recv(src, &mut buf[read..]) {
                Ok(0) => eof = true,
                Ok(more) => read += more,
                Err(_) => {}
            }
        }
        let sent = if eof {
            send_more(dst, &buf[..read])
        } else {
            send(dst, &buf[..read])
        };
        let sent = match sent {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Ok(Copied::DstFailed(e)),
        };
        let tail = (sent < read).then(|| buf[sent..read].to_vec());
        Ok(Copied::Read(read, sent, tail, eof))
    })
}

#[cfg(test)]
mod tests {
    use super::park_wait;

    #[test]
    fn parks_only_when_both_ways_wait_and_the_delay_passed() {
        let both = [true, true];
        assert_eq!(park_wait(1000, 1000, both, 500), 500);
        assert_eq!(park_wait(1400, 1000, both, 500), 100);
        assert_eq!(park_wait(1500, 1000, both, 500), 0);
        assert_eq!(park_wait(9000, 1000, both, 500), 0);
        // One way busy (a send blocked on the peer): check again later.
        assert_eq!(park_wait(9000, 1000, [true, false], 500), 500);
        assert_eq!(park_wait(9000, 1000, [false, true], 500), 500);
        // A stamp newer than `now` counts as fresh, and a zero delay cannot spin.
        assert_eq!(park_wait(1000, 2000, both, 500), 500);
        assert_eq!(park_wait(1000, 1000, [false, false], 0), 1);
    }
}

//! The parking lot: idle connections without a task.
//!
//! A parked connection is a [`Parked`] entry (two socket descriptors, the
//! connection's guards and plan, its activity stamps and the runtime to resume
//! on; about 150 bytes) in one process-wide slab. Both sockets are registered
//! in the lot's own epoll instance with the entry's key, watched by one thread
//! (`betwixt-park`) that mostly sleeps in `epoll_wait`:
//!
//! - a socket turns readable (data, FIN, error): the entry leaves the slab and
//!   epoll and [`super::session::resume`] is spawned on its runtime;
//! - the thread sweeps the entries ([`verdict`]) when the earliest idle
//!   deadline among them comes ([`idle_left`]), when a drain kill or a
//!   backend close (`on_down = "close"`, API disable) asks for one
//!   ([`sweep_now`]), and at least every [`SWEEP`] as a backstop. So idle
//!   timeouts and kills take effect on time (to the coarse clock's tick).
//!
//! Without parked entries the thread sleeps until the next park wakes it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;

use super::pump::{End, idle_ms_left, now_ms};
use super::session::{self, Conn};
use crate::warn;

/// The longest time between two sweeps of parked connections (idle
/// timeouts are checked at their deadline, kills when requested).
pub const SWEEP: Duration = Duration::from_millis(250);
const SWEEP_MS: u64 = SWEEP.as_millis() as u64;
/// Key of the lot's wake-up eventfd in its epoll set.
const WAKE: u64 = u64::MAX;
/// Parks after which a sweep gives freed task memory back to the OS
/// (`malloc_trim`); fewer are trimmed once a sweep period passes without one.
const TRIM_AFTER: usize = 256;

/// A connection without a task.
pub struct Parked {
    client: OwnedFd,
    backend: OwnedFd,
    /// Activity stamps (client, backend) in [`now_ms`] time.
    seen: [u64; 2],
    conn: Conn,
    runtime: Handle,
}

impl Parked {
    /// Take both sockets out of tokio's reactor. On failure the connection is
    /// lost (its sockets closed) and given back for logging.
    pub fn new(
        conn: Conn,
        client: TcpStream,
        backend: TcpStream,
        seen: [u64; 2],
    ) -> Result<Self, (Conn, io::Error)> {
        let runtime = Handle::try_current().map_err(io::Error::other);
        let fds = runtime.and_then(|r| Ok((r, client.into_std()?, backend.into_std()?)));
        match fds {
            Ok((runtime, c, b)) => Ok(Self {
                client: c.into(),
                backend: b.into(),
                seen,
                conn,
                runtime,
            }),
            Err(e) => Err((conn, e)),
        }
    }

    pub fn into_parts(self) -> (Conn, OwnedFd, OwnedFd, [u64; 2]) {
        (self.conn, self.client, self.backend, self.seen)
    }
}

/// Why a parked connection must close now, if it must. Pure: `limits` are the
/// client and backend idle timeouts, `seen` the last activity of each side.
pub fn verdict(
    now: u64,
    seen: [u64; 2],
    limits: [Option<Duration>; 2],
    killed: bool,
) -> Option<End> {
    if killed {
        return Some(End::Killed);
    }
    let over = |i: usize| limits[i].is_some_and(|l| idle_ms_left(now, seen[i], l) == 0);
    if over(0) {
        Some(End::ClientIdle)
    } else if over(1) {
        Some(End::BackendIdle)
    } else {
        None
    }
}

/// Milliseconds until the first of a connection's idle timeouts expires (0:
/// expired); `None` without timeouts. Pure, like [`verdict`].
pub fn idle_left(now: u64, seen: [u64; 2], limits: [Option<Duration>; 2]) -> Option<u64> {
    (0..2)
        .filter_map(|i| Some(idle_ms_left(now, seen[i], limits[i]?)))
        .min()
}

/// Entries by key: slot index in the low 32 bits, the slot's generation in
/// the high ones (so a stale epoll event never reaches a reused slot).
struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, p: T) -> u64 {
        self.len += 1;
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(p);
        (u64::from(slot.0) << 32) | index as u64
    }

    fn take(&mut self, key: u64) -> Option<T> {
        let index = (key & u64::from(u32::MAX)) as usize;
        let slot = self.slots.get_mut(index)?;
        if u64::from(slot.0) != key >> 32 {
            return None;
        }
        let p = slot.1.take()?;
        self.free.push(index as u32);
        self.len -= 1;
        Some(p)
    }

    /// Remove and return the entries `close` picks, with its verdict.
    fn sweep(&mut self, mut close: impl FnMut(&T) -> Option<End>) -> Vec<(T, End)> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(end) = slot.1.as_ref().and_then(&mut close) else {
                continue;
            };
            if let Some(p) = slot.1.take() {
                out.push((p, end));
                self.free.push(index as u32);
            }
        }
        self.len -= out.len();
        out
    }
}

struct Lot {
    epoll: OwnedFd,
    wake: OwnedFd,
    slab: Mutex<Slab<Parked>>,
    /// When the next sweep is due ([`now_ms`] time); changed only with the
    /// slab locked, so a park and a sweep cannot undo each other's update.
    due: AtomicU64,
    /// Parks since the last trim, and that count at the previous sweep.
    parks: AtomicUsize,
    parks_at_sweep: AtomicUsize,
}

/// Park a connection. Gives it back (`Some`) when the lot cannot take it.
pub fn park(p: Parked) -> Option<Parked> {
    let Some(lot) = lot() else {
        return Some(p);
    };
    let (client, backend) = (p.client.as_raw_fd(), p.backend.as_raw_fd());
    let now = now_ms();
    let deadline = idle_left(now, p.seen, p.conn.idle_limits()).map(|left| now + left);
    let mut slab = lot.slab();
    // Wake the thread to sleep anew when this entry is due before the rest.
    let mut wake = slab.len == 0;
    if let Some(d) = deadline.filter(|d| *d < lot.due.load(Relaxed)) {
        lot.due.store(d, Relaxed);
        wake = true;
    }
    let key = slab.insert(p);
    let added = ctl(&lot.epoll, libc::EPOLL_CTL_ADD, client, key)
        .and_then(|()| ctl(&lot.epoll, libc::EPOLL_CTL_ADD, backend, key));
    if let Err(e) = added {
        let _ = ctl(&lot.epoll, libc::EPOLL_CTL_DEL, client, 0);
        warn!("proxy", "parking a connection: {e}");
        return slab.take(key);
    }
    drop(slab);
    lot.parks.fetch_add(1, Relaxed);
    if wake {
        lot.wake_up();
    }
    None
}

/// Connections parked right now.
pub fn parked() -> usize {
    lot().map_or(0, |l| l.slab().len)
}

static LOT: OnceLock<Option<Lot>> = OnceLock::new();
static STARTED: OnceLock<bool> = OnceLock::new();

/// The lot, made and its thread started on first use.
fn lot() -> Option<&'static Lot> {
    let lot = LOT.get_or_init(|| match Lot::new() {
        Ok(lot) => Some(lot),
        Err(e) => {
            warn!(
                "proxy",
                "parking lot unavailable, idle connections keep their task: {e}"
            );
            None
        }
    });
    let lot = lot.as_ref()?;
    let started = STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("betwixt-park".into())
            .stack_size(256 * 1024)
            .spawn(move || lot.run());
        spawned
            .map_err(|e| warn!("proxy", "parking lot thread: {e}"))
            .is_ok()
    });
    started.then_some(lot)
}

/// Sweep the parked connections now instead of at the next [`SWEEP`]: a
/// drain kill or a backend close has just been requested. Does nothing when
/// nothing is parked (and never starts the lot).
pub fn sweep_now() {
    let (Some(Some(lot)), Some(true)) = (LOT.get(), STARTED.get()) else {
        return;
    };
    let slab = lot.slab();
    if slab.len == 0 {
        return;
    }
    // Under the slab lock, like every change of `due` (see `Lot::due`).
    lot.due.store(0, Relaxed);
    drop(slab);
    lot.wake_up();
}

impl Lot {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscalls; each returned descriptor is owned below.
        let (ep, ev) = unsafe {
            (
                libc::epoll_create1(libc::EPOLL_CLOEXEC),
                libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC),
            )
        };
        let owned = |fd: RawFd| {
            // SAFETY: fd was just returned by the kernel and nothing else owns it.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let (epoll, wake) = match (owned(ep), owned(ev)) {
            (Some(e), Some(w)) => (e, w),
            _ => return Err(io::Error::last_os_error()),
        };
        ctl(&epoll, libc::EPOLL_CTL_ADD, wake.as_raw_fd(), WAKE)?;
        Ok(Self {
            epoll,
            wake,
            slab: Mutex::new(Slab::default()),
            due: AtomicU64::new(0),
            parks: AtomicUsize::new(0),
            parks_at_sweep: AtomicUsize::new(0),
        })
    }

    fn slab(&self) -> MutexGuard<'_, Slab<Parked>> {
        self.slab.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_up(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn run(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let timeout = if self.slab().len == 0 {
                -1
            } else {
                self.due.load(Relaxed).saturating_sub(now_ms()) as i32
            };
            // SAFETY: the buffer holds `events.len()` entries for the kernel to fill.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            for ev in events.iter().take(n.max(0) as usize) {
                self.ready(ev.u64);
            }
            let now = now_ms();
            if now >= self.due.load(Relaxed) {
                self.sweep(now);
            }
        }
    }

    /// A socket of entry `key` is readable (or the wake-up eventfd).
    fn ready(&self, key: u64) {
        if key == WAKE {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live buffer.
            unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            return;
        }
        let Some(p) = self.slab().take(key) else {
            return;
        };
        let _ = ctl(&self.epoll, libc::EPOLL_CTL_DEL, p.client.as_raw_fd(), 0);
        let _ = ctl(&self.epoll, libc::EPOLL_CTL_DEL, p.backend.as_raw_fd(), 0);
        let runtime = p.runtime.clone();
        // Boxed for the same reason as a new connection's task (`tcp::serve`).
        drop(runtime.spawn(Box::pin(session::resume(p))));
    }

    /// Close the entries whose time has come; the next sweep is due at the
    /// earliest idle deadline left, or one [`SWEEP`] from now.
    fn sweep(&self, now: u64) {
        let mut next = SWEEP_MS;
        let closing = {
            let mut slab = self.slab();
            let closing = slab.sweep(|p| {
                let limits = p.conn.idle_limits();
                let end = verdict(now, p.seen, limits, p.conn.killed());
                if end.is_none() {
                    next = idle_left(now, p.seen, limits).map_or(next, |left| next.min(left));
                }
                end
            });
            self.due.store(now + next.max(1), Relaxed);
            closing
        };
        for (p, end) in closing {
            p.conn.log_end(&Ok(end), true);
            // Closing the descriptors also removes them from the epoll set.
            drop(p);
        }
        let parks = self.parks.load(Relaxed);
        if trim_due(parks, self.parks_at_sweep.swap(parks, Relaxed)) {
            self.parks.fetch_sub(parks, Relaxed);
            self.parks_at_sweep.store(0, Relaxed);
            trim();
        }
    }
}

/// Trim after many parks, or after a burst of parks has ended (no park
/// since the previous sweep).
fn trim_due(parks: usize, at_previous_sweep: usize) -> bool {
    parks >= TRIM_AFTER || (parks > 0 && parks == at_previous_sweep)
}

/// Give freed heap memory (the tasks of parked connections) back to the OS.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn ctl(epoll: &OwnedFd, op: libc::c_int, fd: RawFd, key: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
        u64: key,
    };
    // SAFETY: epoll_ctl on our epoll descriptor with a live event struct.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::pump::COARSE_SLACK_MS;
    use super::*;

    const S: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn verdict_kills_first_then_client_then_backend_timeout() {
        let slack = COARSE_SLACK_MS;
        assert_eq!(verdict(5000, [5000, 5000], [S, S], true), Some(End::Killed));
        assert_eq!(
            verdict(5000 + slack, [4000, 4000], [S, S], false),
            Some(End::ClientIdle)
        );
        assert_eq!(
            verdict(5000 + slack, [4500, 4000], [S, S], false),
            Some(End::BackendIdle)
        );
        // One coarse tick of slack: a limit is never reached early.
        assert_eq!(verdict(5000, [4000, 4000], [S, S], false), None);
        assert_eq!(verdict(5000 + slack, [4001, 4001], [S, S], false), None);
        assert_eq!(verdict(99_000, [0, 0], [None, None], false), None);
        // A stamp from the future (clock read earlier elsewhere) is not idle.
        assert_eq!(verdict(1000, [2000, 2000], [S, S], false), None);
    }

    #[test]
    fn idle_left_is_the_nearer_deadline() {
        let half = Some(Duration::from_millis(500));
        let slack = COARSE_SLACK_MS;
        assert_eq!(idle_left(5000, [4800, 4900], [S, S]), Some(800 + slack));
        assert_eq!(idle_left(5000, [4800, 4900], [S, half]), Some(400 + slack));
        assert_eq!(idle_left(5000, [4800, 3000], [None, S]), Some(0), "expired");
        assert_eq!(idle_left(5000, [0, 0], [None, None]), None);
        // A stamp from the future counts as fresh.
        assert_eq!(idle_left(1000, [2000, 2000], [S, None]), Some(1000 + slack));
    }

    #[test]
    fn a_parked_connection_stays_small() {
        let slot = std::mem::size_of::<(u32, Option<Parked>)>();
        eprintln!("parked slot: {slot} bytes");
        assert!(slot <= 200, "parked slot grew to {slot} bytes");
    }

    #[test]
    fn trims_after_many_parks_or_when_a_burst_ended() {
        assert!(!trim_due(0, 0));
        assert!(!trim_due(5, 0), "parks still coming in");
        assert!(!trim_due(5, 3), "parks still coming in");
        assert!(trim_due(5, 5), "a sweep period without a park");
        assert!(trim_due(TRIM_AFTER, 0));
    }

    #[test]
    fn slab_keys_are_not_reused_across_generations() {
        let mut slab = Slab::default();
        let a = slab.insert(1u32);
        let b = slab.insert(2u32);
        assert_eq!(slab.take(a), Some(1));
        assert_eq!(slab.take(a), None, "taken twice");
        let c = slab.insert(3u32);
        assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff, "slot reused");
        assert_eq!(slab.take(a), None, "stale key reached the new entry");
        assert_eq!(slab.len, 2);
        let swept = slab.sweep(|v| (*v == 2).then_some(End::ClientIdle));
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].0, 2);
        assert_eq!(slab.take(b), None);
        assert_eq!(slab.take(c), Some(3));
        assert_eq!(slab.len, 0);
    }
}

//! Low-RTT bulk tuning: what a direction does to betwixt's own two sockets
//! when it starts moving bulk data (splice mode) over a sub-millisecond path.
//!
//! Measured on loopback (docs/PERFORMANCE.md, "Low-RTT bulk tuning"): the
//! kernel's defaults cost the *peers'* CPU there, not betwixt's.
//!
//! * A model-based, pacing congestion control (`bbr`) keeps the send window
//!   near two round trips of data. With a round trip of a few microseconds
//!   that is a few dozen KB, so most of what betwixt splices waits in its
//!   socket and is transmitted later from the ACK path, which the kernel runs
//!   on the CPU of the peer that read the data. `reno` sends it at once, from
//!   betwixt's own CPU. On a sub-millisecond path the two behave alike on the
//!   wire: there is no queue for `bbr` to keep short.
//! * Receive-buffer autotuning grows to tens of MB on loopback, so several
//!   MB of payload are in flight between the client's write and the
//!   backend's read, and both of those copies miss the CPU cache. A 512 KiB
//!   buffer still holds more than a 10 Gbit/s path delivers in 0.4 ms.
//! * Even with `reno`, a sending socket holding lots of *unsent* data has it
//!   clocked out by the ACKs of a slower reader, again on the reader's CPU.
//!   Once that CPU saturates, the flow can settle at about half rate with
//!   betwixt's CPU half idle. `TCP_NOTSENT_LOWAT` of 32 KiB keeps the unsent
//!   part small: a window update transmits at most that much on the reader's
//!   CPU, and betwixt's next splice sends the rest from its own.
//!
//! Paths with a round trip of 1 ms or more are left alone: there the buffers
//! and the congestion control matter on the wire.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use socket2::SockRef;

/// Round trips (µs) below this count as local.
pub const LOCAL_RTT_US: u32 = 1000;
/// `SO_RCVBUF` / `SO_SNDBUF` asked for on a local bulk path (the kernel
/// doubles it; without CAP_NET_ADMIN it is capped at `net.core.{r,w}mem_max`).
pub const LOCAL_BUFFER: usize = 512 * 1024;
/// `TCP_NOTSENT_LOWAT` of the sending socket on a local bulk path: at most
/// this much unsent data waits in it (betwixt is told it is writable again
/// below that).
pub const LOCAL_NOTSENT_LOWAT: u32 = 32 * 1024;
/// Congestion controls replaced on a local bulk path, and their replacement.
const PACING: &[&[u8]] = &[b"bbr", b"bbr2", b"bbr3"];
const LOCAL_CONGESTION: &[u8] = b"reno";

/// What was changed on a direction's sockets.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Tuning {
    /// A local path: the source's receive and the destination's send buffer
    /// were capped and the destination's unsent data limited.
    pub local: bool,
    /// The destination (the sending socket) was switched to [`LOCAL_CONGESTION`].
    pub reno: bool,
}

/// Both sockets' smoothed round trips (µs; `None` when the kernel would not
/// say) are under [`LOCAL_RTT_US`].
pub fn is_local(rtts: [Option<u32>; 2]) -> bool {
    rtts.iter()
        .all(|r| matches!(r, Some(us) if *us < LOCAL_RTT_US))
}

/// A congestion control that a local bulk path replaces (pacing, model-based).
pub fn replaced(congestion: &[u8]) -> bool {
    PACING.contains(&name(congestion))
}

/// The name in a `TCP_CONGESTION` value, which the kernel pads with NULs.
fn name(raw: &[u8]) -> &[u8] {
    raw.split(|&b| b == 0).next().unwrap_or_default()
}

/// Tune a direction that starts bulk mode (`src` -> `dst`). Errors are not
/// fatal for the connection: the caller logs nothing and relays on.
pub fn apply(src: &impl AsFd, dst: &impl AsFd) -> io::Result<Tuning> {
    let (src, dst) = (SockRef::from(src), SockRef::from(dst));
    if !is_local([rtt_us(&src).ok(), rtt_us(&dst).ok()]) {
        return Ok(Tuning::default());
    }
    set_buffer(&src, libc::SO_RCVBUFFORCE, |s| {
        s.set_recv_buffer_size(LOCAL_BUFFER)
    })?;
    set_buffer(&dst, libc::SO_SNDBUFFORCE, |s| {
        s.set_send_buffer_size(LOCAL_BUFFER)
    })?;
    dst.set_tcp_notsent_lowat(LOCAL_NOTSENT_LOWAT)?;
    let reno = replaced(&dst.tcp_congestion()?);
    if reno {
        dst.set_tcp_congestion(LOCAL_CONGESTION)?;
    }
    Ok(Tuning { local: true, reno })
}

/// The smoothed round trip of a TCP socket in µs (`tcpi_rtt`).
fn rtt_us(sock: &SockRef<'_>) -> io::Result<u32> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `info`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.tcpi_rtt)
}

/// Set a buffer size past `net.core.{r,w}mem_max` with `force` when
/// allowed (CAP_NET_ADMIN), else up to it with `plain`.
fn set_buffer(
    sock: &SockRef<'_>,
    force: libc::c_int,
    plain: impl FnOnce(&SockRef<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let value = LOCAL_BUFFER as libc::c_int;
    // SAFETY: the kernel reads one c_int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            force,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EPERM) => plain(sock),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn only_local_paths_are_tuned_and_only_pacing_controls_replaced() {
        assert!(is_local([Some(40), Some(999)]));
        for far in [
            [Some(40), Some(1000)],
            [Some(25_000), Some(40)],
            [None, Some(40)],
        ] {
            assert!(!is_local(far), "{far:?}");
        }
        assert!(replaced(b"bbr") && replaced(b"bbr\0\0\0\0\0\0\0\0\0\0\0\0\0"));
        // cubic is not paced; dctcp and friends are chosen on purpose for
        // low-RTT networks.
        assert!(!replaced(b"cubic") && !replaced(b"dctcp") && !replaced(b"reno"));
    }

    #[test]
    fn applies_to_a_loopback_pair() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        let congestion = |s: &TcpStream| {
            let raw = SockRef::from(s).tcp_congestion().expect("congestion");
            name(&raw).to_vec()
        };
        let before = congestion(&a);
        assert!(!before.is_empty());
        let tuning = apply(&b, &a).expect("apply");
        // Loopback is local unless the machine is badly overloaded.
        if tuning.local {
            let lowat = SockRef::from(&a).tcp_notsent_lowat().expect("lowat");
            assert_eq!(lowat, LOCAL_NOTSENT_LOWAT);
            let expect = if tuning.reno {
                &b"reno"[..]
            } else {
                &before[..]
            };
            assert_eq!(congestion(&a), expect);
        }
    }
}

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
//!
//! Paths with a round trip of 1 ms or more are left alone: there the buffers
//! and the congestion control matter on the wire.

use std::io;
use std::os::fd::RawFd;

/// Round trips (µs) below this count as local.
pub const LOCAL_RTT_US: u32 = 1000;
/// `SO_RCVBUF` / `SO_SNDBUF` asked for on a local bulk path (the kernel
/// doubles it; without CAP_NET_ADMIN it is capped at `net.core.{r,w}mem_max`).
pub const LOCAL_BUFFER: usize = 512 * 1024;
/// Congestion controls replaced on a local bulk path, and their replacement.
const PACING: &[&str] = &["bbr", "bbr2", "bbr3"];
const LOCAL_CONGESTION: &str = "reno";

/// What to change on a direction's sockets.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Tuning {
    /// Cap the source's receive and the destination's send buffer.
    pub cap_buffers: bool,
    /// Switch the destination (the sending socket) to [`LOCAL_CONGESTION`].
    pub reno: bool,
}

/// Decide from the two sockets' smoothed round trips (µs; `None` when the
/// kernel would not say) and the destination's congestion control.
pub fn decide(rtts: [Option<u32>; 2], dst_congestion: &str) -> Tuning {
    let local = rtts
        .iter()
        .all(|r| matches!(r, Some(us) if *us < LOCAL_RTT_US));
    Tuning {
        cap_buffers: local,
        reno: local && PACING.contains(&dst_congestion),
    }
}

/// Tune a direction that starts bulk mode (`src` -> `dst`). Errors are not
/// fatal for the connection: the caller logs nothing and relays on.
pub fn apply(src: RawFd, dst: RawFd) -> io::Result<Tuning> {
    let rtts = [rtt_us(src).ok(), rtt_us(dst).ok()];
    if !decide(rtts, "").cap_buffers {
        // A far path: leave it alone, without asking for the algorithm.
        return Ok(Tuning::default());
    }
    let name = congestion(dst)?;
    let tuning = decide(rtts, name.as_str());
    if tuning.cap_buffers {
        set_buffer(src, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)?;
        set_buffer(dst, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)?;
    }
    if tuning.reno {
        set_congestion(dst, LOCAL_CONGESTION)?;
    }
    Ok(tuning)
}

/// The smoothed round trip of a TCP socket in µs (`tcpi_rtt`).
fn rtt_us(fd: RawFd) -> io::Result<u32> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `info`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
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

/// The socket's congestion control name (at most 15 bytes, `TCP_CA_NAME_MAX`).
pub fn congestion(fd: RawFd) -> io::Result<heapless::String<16>> {
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `buf`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = &buf[..(len as usize).min(buf.len())];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut name = heapless::String::new();
    for c in String::from_utf8_lossy(&bytes[..end]).chars() {
        if name.push(c).is_err() {
            break;
        }
    }
    Ok(name)
}

fn set_congestion(fd: RawFd, name: &str) -> io::Result<()> {
    // SAFETY: the kernel reads `len` bytes of the name.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set a buffer size past `net.core.{r,w}mem_max` when allowed
/// (CAP_NET_ADMIN), else up to it.
fn set_buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int) -> io::Result<()> {
    match set_int(fd, libc::SOL_SOCKET, force, LOCAL_BUFFER) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            set_int(fd, libc::SOL_SOCKET, plain, LOCAL_BUFFER)
        }
        other => other,
    }
}

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, value: usize) -> io::Result<()> {
    let value = value.min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: the kernel reads one c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn only_local_paths_are_tuned_and_only_pacing_controls_replaced() {
        let local = [Some(40), Some(999)];
        assert_eq!(
            decide(local, "bbr"),
            Tuning {
                cap_buffers: true,
                reno: true
            }
        );
        assert_eq!(
            decide(local, "cubic"),
            Tuning {
                cap_buffers: true,
                reno: false
            }
        );
        // dctcp and friends are chosen on purpose for low-RTT networks.
        assert!(!decide(local, "dctcp").reno);
        for far in [
            [Some(40), Some(1000)],
            [Some(25_000), Some(40)],
            [None, Some(40)],
        ] {
            assert_eq!(decide(far, "bbr"), Tuning::default(), "{far:?}");
        }
    }

    #[test]
    fn applies_to_a_loopback_pair() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        let before = congestion(a.as_raw_fd()).expect("congestion");
        assert!(!before.is_empty());
        let tuning = apply(b.as_raw_fd(), a.as_raw_fd()).expect("apply");
        // Loopback is local unless the machine is badly overloaded.
        if tuning.cap_buffers {
            let after = congestion(a.as_raw_fd()).expect("congestion");
            let expect = if tuning.reno { "reno" } else { before.as_str() };
            assert_eq!(after.as_str(), expect);
        }
    }
}

//! Listeners and the per-connection data path.
//!
//! - [`tcp`]: accept loop, admission, election, connect with retries.
//! - [`session`]: a connected pair: relay, park when idle, resume.
//! - [`park`]: the parking lot of idle connections (own epoll, one thread).
//! - [`pump`]: relaying bytes both ways with half-close and idle timeouts.
//! - [`splice`]: raw non-blocking syscalls and the pipe pool.
//! - [`sockmap`] (and `gated`, `sockmap_bpf` with feature "ebpf" and the
//!   BPF object compiled by build.rs): the optional in-kernel relay of
//!   servers with `sockmap = true`.
//! - [`tune`]: buffers and congestion control of local bulk flows.
//! - [`sni`]: the ClientHello parser and the `MSG_PEEK` read of it.
//! - [`tls`]: TLS termination and origination; [`stream`]: the buffered
//!   relay used when either side is TLS.
//! - [`udp`]: udp servers and their sessions (`udp_limits`: when a session
//!   ends and how many may be open, pure; `udp_pktinfo`: the local address
//!   of a datagram on a wildcard bind).
//! - `on_wake`: a future polled only when its own waker fired.
//! - [`access`], [`proxy_protocol`]: pure helpers used on accept and connect.

pub mod access;
#[cfg(all(feature = "ebpf", betwixt_ebpf_obj))]
mod gated;
mod on_wake;
pub mod park;
pub mod proxy_protocol;
pub mod pump;
pub mod session;
pub mod sni;
pub mod sockmap;
#[cfg(all(feature = "ebpf", betwixt_ebpf_obj))]
mod sockmap_bpf;
pub mod splice;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod tune;
pub mod udp;
mod udp_limits;
mod udp_pktinfo;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_park;

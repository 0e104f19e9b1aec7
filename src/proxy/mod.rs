//! Listeners and the per-connection data path.
//!
//! - [`tcp`]: accept loop, admission, election, connect with retries.
//! - [`pump`]: relaying bytes both ways with half-close and idle timeouts.
//! - [`splice`]: raw non-blocking syscalls and the pipe pool.
//! - [`access`], [`proxy_protocol`]: pure helpers used on accept and connect.

pub mod access;
pub mod proxy_protocol;
pub mod pump;
pub mod sni;
pub mod splice;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod udp;

#[cfg(test)]
mod tests;

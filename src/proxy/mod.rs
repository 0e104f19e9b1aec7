//! Listeners and the per-connection data path.

pub mod access;
pub mod proxy_protocol;

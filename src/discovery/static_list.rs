//! gobetween's backend line format:
//! `host:port [weight=N] [priority=N] [max_connections=N] [sni=NAME]`.

use super::BackendSpec;

/// Parse one line. Errors say what is wrong with the line.
pub fn parse_line(line: &str) -> Result<BackendSpec, String> {
    let line = line.trim();
    let (host, port) = line
        .rsplit_once(':')
        .ok_or_else(|| format!("`{line}`: expected host:port"))?;
    let port = port.parse().map_err(|_| format!("`{line}`: bad port"))?;
    Ok(BackendSpec {
        host: host.to_string(),
        port,
        weight: 1,
        priority: 1,
        max_connections: 0,
        sni: String::new(),
    })
}

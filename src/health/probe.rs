//! `probe`: send bytes, read a fixed number back, match them.
//!
//! The reply is read into a fixed-size buffer of [`MAX_RECV`] bytes (the
//! config refuses a larger `probe_recv_len`): exactly `read_len` bytes, or
//! fewer if the peer closes (which then fails the match). Over UDP one
//! datagram is sent and replies are read until `read_len` bytes arrived.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{Cause, Outcome, Target};
use crate::config::{Probe, ProbeExpect, ProbeProtocol};

/// Largest reply a probe reads.
pub const MAX_RECV: usize = 4096;

type Buf = heapless::Vec<u8, MAX_RECV>;

pub async fn check(probe: &Probe, target: &Target) -> Outcome {
    let addr = match target.resolve().await {
        Ok(a) => a,
        Err(o) => return o,
    };
    let reply = match probe.protocol {
        ProbeProtocol::Tcp => match TcpStream::connect(addr).await {
            Ok(stream) => exchange(stream, &probe.send, probe.read_len).await,
            Err(e) => return Outcome::from_io(&format!("connect {addr}"), &e),
        },
        ProbeProtocol::Udp => udp(addr, &probe.send, probe.read_len).await,
        ProbeProtocol::Tls => tls(probe, target, addr).await,
    };
    match reply {
        Ok(got) => judge(&probe.expect, &got),
        Err(o) => o,
    }
}

/// TLS handshake (certificates verified against the system roots for the
/// backend's host, an IP literal as an IP SAN, unless `probe_tls_insecure`),
/// then the same exchange as over TCP.
#[cfg(feature = "tls")]
async fn tls(probe: &Probe, target: &Target, addr: std::net::SocketAddr) -> Result<Buf, Outcome> {
    let config = crate::http::shared_tls(probe.tls_insecure)
        .map_err(|e| Outcome::fail(Cause::Unavailable, e))?;
    let name = crate::tls::server_name(&target.host)
        .map_err(|e| Outcome::fail(Cause::Tls, format!("server name {e}")))?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Outcome::from_io(&format!("connect {addr}"), &e))?;
    let stream = crate::tls::connect(stream, config, name)
        .await
        .map_err(|e| Outcome::fail(Cause::Tls, format!("tls handshake with {addr}: {e}")))?;
    exchange(stream, &probe.send, probe.read_len).await
}

#[cfg(not(feature = "tls"))]
async fn tls(
    _probe: &Probe,
    _target: &Target,
    _addr: std::net::SocketAddr,
) -> Result<Buf, Outcome> {
    Err(Outcome::fail(
        Cause::Unavailable,
        "this build has no TLS support (feature \"tls\")",
    ))
}

/// Write `send`, then read up to `len` bytes (stops early at EOF).
pub async fn exchange<S>(mut stream: S, send: &[u8], len: usize) -> Result<Buf, Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !send.is_empty() {
        stream
            .write_all(send)
            .await
            .map_err(|e| Outcome::from_io("send", &e))?;
    }
    let mut buf = [0u8; MAX_RECV];
    let want = len.min(MAX_RECV);
    let mut got = 0;
    while got < want {
        match stream.read(&mut buf[got..want]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            // A TLS peer closing without close_notify: a short read.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(Outcome::from_io("receive", &e)),
        }
    }
    Ok(Buf::from_slice(&buf[..got]).unwrap_or_default())
}

async fn udp(addr: std::net::SocketAddr, send: &[u8], len: usize) -> Result<Buf, Outcome> {
    let local: std::net::SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let io = |what: &str, e: std::io::Error| Outcome::from_io(&format!("{what} {addr}"), &e);
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| io("bind for", e))?;
    sock.connect(addr).await.map_err(|e| io("connect", e))?;
    sock.send(send).await.map_err(|e| io("send to", e))?;
    let mut buf = [0u8; MAX_RECV];
    let want = len.min(MAX_RECV);
    let mut got = 0;
    while got < want {
        match sock.recv(&mut buf[got..]).await {
            // A datagram longer than what is left is cut to `want`.
            Ok(n) => got = (got + n).min(want),
            Err(e) => return Err(io("receive from", e)),
        }
    }
    Ok(Buf::from_slice(&buf[..got]).unwrap_or_default())
}

/// Compare the reply with the expectation.
pub fn judge(expect: &ProbeExpect, got: &[u8]) -> Outcome {
    if matches(expect, got) {
        return Outcome::pass(format!("{} bytes matched", got.len()));
    }
    Outcome::fail(
        Cause::Mismatch,
        format!("reply {:?} does not match", String::from_utf8_lossy(got)),
    )
}

pub fn matches(expect: &ProbeExpect, got: &[u8]) -> bool {
    match expect {
        ProbeExpect::StartsWith(want) => got == want.as_slice(),
        ProbeExpect::Regexp(re) => re.0.is_match(got),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_needs_every_expected_byte() {
        let e = ProbeExpect::StartsWith(b"+PONG".to_vec());
        assert!(matches(&e, b"+PONG"));
        assert!(!matches(&e, b"+PON"), "short read (peer closed early)");
        assert!(!matches(&e, b"-ERR "));
    }

    #[test]
    fn regexp_is_unanchored_over_bytes() {
        let re = regex::bytes::Regex::new(r"OK\x00").unwrap();
        let e = ProbeExpect::Regexp(crate::config::BytesPattern(re));
        assert!(matches(&e, b"xx OK\0 yy"));
        assert!(!matches(&e, b"NOPE"));
    }

    #[tokio::test]
    async fn exchange_reads_at_most_len_into_the_fixed_buffer() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let peer = tokio::spawn(async move {
            let mut req = [0u8; 4];
            let _ = a.read_exact(&mut req).await;
            let _ = a.write_all(&vec![b'z'; 20_000]).await;
            req
        });
        let got = exchange(b, b"PING", 100_000).await.unwrap_or_default();
        assert_eq!(got.len(), MAX_RECV);
        assert_eq!(peer.await.unwrap_or_default(), *b"PING");
    }
}

//! The I/O half: dial, optional TLS, write the request, read the response.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::wire::{self, Chunked, Framing, Request};

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    Tcp(SocketAddr),
    /// A unix stream socket (Docker, LXD).
    Unix(PathBuf),
}

impl fmt::Display for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dial::Tcp(a) => write!(f, "{a}"),
            Dial::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// TLS over the connection: the client configuration (see
/// [`crate::tls::client_config`] or [`super::shared_tls`]) and the name to
/// verify and send as SNI (an IP-literal name is verified as an IP SAN and
/// sends no SNI).
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Without feature `tls` there is no TLS value to pass.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub enum Tls {}

/// What to do with a body longer than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Keep the first N bytes, stop reading, set [`Response::truncated`].
    Truncate(usize),
    /// Fail with [`Error::TooLarge`].
    Fail(usize),
}

/// A response; the body is decoded from its transfer coding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than the [`Limit::Truncate`] cap and was cut.
    pub truncated: bool,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed, by stage (so callers can classify it).
#[derive(Debug)]
pub enum Error {
    /// The request could not be written (bad header value, https without
    /// feature `tls`, bad URL, resolution failure).
    Request(String),
    /// TCP or unix connect failed.
    Connect(io::Error),
    /// TLS handshake or certificate verification failed.
    Tls(io::Error),
    /// Writing the request or reading the response failed.
    Io(io::Error),
    /// The reply is not HTTP/1.x, or its framing is broken.
    BadResponse(String),
    /// The body exceeds the [`Limit::Fail`] cap.
    TooLarge(usize),
    /// No complete response within the time given to [`super::within`].
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Request(e) => write!(f, "bad request: {e}"),
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::Tls(e) => write!(f, "tls: {e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::BadResponse(e) => f.write_str(e),
            Error::TooLarge(n) => write!(f, "response larger than {n} bytes"),
            Error::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Error {}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Dial, optionally run a TLS handshake, send `req`, read the response.
/// The connection is closed afterwards (`Connection: close`).
pub async fn send(
    dial: &Dial,
    tls: Option<&Tls>,
    req: &Request,
    limit: Limit,
) -> Result<Response, Error> {
    let bytes = req.encode().map_err(Error::Request)?;
    let stream: Box<dyn Stream> = match dial {
        Dial::Tcp(addr) => {
            let s = TcpStream::connect(addr).await.map_err(Error::Connect)?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
        Dial::Unix(path) => Box::new(UnixStream::connect(path).await.map_err(Error::Connect)?),
    };
    let mut stream = match tls {
        None => stream,
        Some(tls) => handshake(stream, tls).await?,
    };
    stream.write_all(&bytes).await.map_err(Error::Io)?;
    stream.flush().await.map_err(Error::Io)?;
    read_response(&mut stream, &req.method, limit).await
}

#[cfg(feature = "tls")]
async fn handshake(stream: Box<dyn Stream>, tls: &Tls) -> Result<Box<dyn Stream>, Error> {
    let s = crate::tls::connect(stream, tls.config.clone(), tls.name.clone())
        .await
        .map_err(Error::Tls)?;
    Ok(Box::new(s))
}

#[cfg(not(feature = "tls"))]
async fn handshake(_stream: Box<dyn Stream>, tls: &Tls) -> Result<Box<dyn Stream>, Error> {
    match *tls {}
}

const READ_CHUNK: usize = 16 * 1024;

/// Read more bytes onto `buf`; 0 = EOF. A TLS peer that closes without
/// close_notify counts as EOF: framing decides whether the body is whole.
async fn fill<S: AsyncRead + Unpin + ?Sized>(s: &mut S, buf: &mut Vec<u8>) -> Result<usize, Error> {
    let mut tmp = [0u8; READ_CHUNK];
    match s.read(&mut tmp).await {
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(Error::Io(e)),
    }
}

/// Read a response head (skipping interim 1xx responses) and its body.
pub(crate) async fn read_response<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    method: &str,
    limit: Limit,
) -> Result<Response, Error> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let head = loop {
        match wire::parse_head(&buf).map_err(Error::BadResponse)? {
            Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                buf.drain(..h.len);
            }
            Some(h) => break h,
            None => {
                if fill(s, &mut buf).await? == 0 {
                    let why = if buf.is_empty() {
                        "connection closed without a response"
                    } else {
                        "connection closed inside the response head"
                    };
                    return Err(Error::BadResponse(why.into()));
                }
            }
        }
    };
    buf.drain(..head.len);
    let framing = wire::framing(method, &head).map_err(Error::BadResponse)?;
    let mut body = Body::new(limit);
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => read_length(s, buf, n, &mut body).await?,
        Framing::Chunked => read_chunked(s, buf, &mut body).await?,
        Framing::Eof => read_eof(s, buf, &mut body).await?,
    }
    Ok(Response {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        body: body.data,
        truncated: body.truncated,
    })
}

async fn read_length<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    mut buf: Vec<u8>,
    n: u64,
    body: &mut Body,
) -> Result<(), Error> {
    if let Limit::Fail(cap) = body.limit
        && n > cap as u64
    {
        return Err(Error::TooLarge(cap));
    }
    let mut got: u64 = 0;
    loop {
        let take = buf
            .len()
            .min(usize::try_from(n - got).unwrap_or(usize::MAX));
        got += take as u64;
        if body.push(&buf[..take])? || got == n {
            return Ok(());
        }
        buf.clear();
        if fill(s, &mut buf).await? == 0 {
            return Err(Error::BadResponse(format!(
                "body ended after {got} of {n} bytes"
            )));
        }
    }
}

async fn read_chunked<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    mut buf: Vec<u8>,
    body: &mut Body,
) -> Result<(), Error> {
    let mut dec = Chunked::new();
    let mut out = Vec::new();
    loop {
        let used = dec.decode(&buf, &mut out).map_err(Error::BadResponse)?;
        buf.drain(..used);
        if body.push(&out)? || dec.done() {
            return Ok(());
        }
        out.clear();
        if fill(s, &mut buf).await? == 0 {
            return Err(Error::BadResponse("chunked body ended early".into()));
        }
    }
}

async fn read_eof<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    mut buf: Vec<u8>,
    body: &mut Body,
) -> Result<(), Error> {
    loop {
        if body.push(&buf)? {
            return Ok(());
        }
        buf.clear();
        if fill(s, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// The body so far, within its limit.
struct Body {
    data: Vec<u8>,
    limit: Limit,
    truncated: bool,
}

impl Body {
    fn new(limit: Limit) -> Self {
        Self {
            data: Vec::new(),
            limit,
            truncated: false,
        }
    }

    /// Append `bytes`; `Ok(true)` = the cap is reached, stop reading.
    fn push(&mut self, bytes: &[u8]) -> Result<bool, Error> {
        let (cap, fail) = match self.limit {
            Limit::Truncate(c) => (c, false),
            Limit::Fail(c) => (c, true),
        };
        let room = cap.saturating_sub(self.data.len());
        if bytes.len() > room {
            if fail {
                return Err(Error::TooLarge(cap));
            }
            self.data.extend_from_slice(&bytes[..room]);
            self.truncated = true;
            return Ok(true);
        }
        self.data.extend_from_slice(bytes);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reply(wire: &[u8], method: &str, limit: Limit) -> Result<Response, Error> {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let wire = wire.to_vec();
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(7) {
                if a.write_all(piece).await.is_err() {
                    break;
                }
            }
        });
        let got = read_response(&mut b, method, limit).await;
        drop(b);
        let _ = writer.await;
        got
    }

    const BIG: Limit = Limit::Fail(1 << 20);

    #[tokio::test]
    async fn reads_length_chunked_and_eof_bodies() {
        let r = reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloIGNORED",
            "GET",
            BIG,
        )
        .await;
        assert_eq!(
            r.map(|r| (r.status, r.body)).ok(),
            Some((200, b"hello".to_vec()))
        );
        let wire =
            b"HTTP/1.1 201 C\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = reply(wire, "GET", BIG).await;
        assert_eq!(r.map(|r| r.body).ok(), Some(b"abcde".to_vec()));
        let r = reply(b"HTTP/1.0 500 X\r\n\r\nuntil the end", "GET", BIG).await;
        assert_eq!(
            r.map(|r| (r.status, r.body)).ok(),
            Some((500, b"until the end".to_vec()))
        );
    }

    #[tokio::test]
    async fn skips_interim_responses_and_honours_head() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
        let r = reply(wire, "POST", BIG).await.ok();
        assert_eq!(r.as_ref().map(|r| r.status), Some(204));
        assert_eq!(
            r.and_then(|r| r.header("x").map(str::to_string)),
            Some("y".into())
        );
        let r = reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            "HEAD",
            BIG,
        )
        .await;
        assert_eq!(r.map(|r| r.body.len()).ok(), Some(0));
    }

    #[tokio::test]
    async fn truncate_keeps_the_cap_and_says_so() {
        let mut wire = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        wire.extend(vec![b'x'; 100]);
        let r = reply(&wire, "GET", Limit::Truncate(10)).await.ok();
        assert_eq!(
            r.as_ref().map(|r| (r.body.len(), r.truncated)),
            Some((10, true))
        );
        let r = reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            "GET",
            Limit::Truncate(3),
        )
        .await;
        assert_eq!(
            r.map(|r| (r.body, r.truncated)).ok(),
            Some((b"abc".to_vec(), false))
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n";
        let mut wire = chunked.to_vec();
        wire.extend(vec![b'y'; 255]);
        let r = reply(&wire, "GET", Limit::Truncate(4)).await;
        assert_eq!(
            r.map(|r| (r.body, r.truncated)).ok(),
            Some((b"yyyy".to_vec(), true))
        );
    }

    #[tokio::test]
    async fn fail_limit_refuses_large_bodies() {
        let r = reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
            "GET",
            Limit::Fail(10),
        )
        .await;
        assert!(matches!(r, Err(Error::TooLarge(10))), "{r:?}");
        let mut wire = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        wire.extend(vec![b'x'; 11]);
        let r = reply(&wire, "GET", Limit::Fail(10)).await;
        assert_eq!(
            r.map_err(|e| e.to_string()).err().as_deref(),
            Some("response larger than 10 bytes")
        );
    }

    #[tokio::test]
    async fn broken_replies_are_bad_responses() {
        let cases: [&[u8]; 5] = [
            b"",
            b"HTTP/1.1 200 OK\r\nA: b",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ];
        for wire in cases {
            let r = reply(wire, "GET", BIG).await;
            assert!(
                matches!(r, Err(Error::BadResponse(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[tokio::test]
    async fn sends_over_a_unix_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                .await;
            String::from_utf8_lossy(&req).into_owned()
        });
        let req = Request::new("GET", "/containers/json", "docker");
        let r = send(&Dial::Unix(path), None, &req, Limit::Fail(100)).await;
        assert_eq!(r.map(|r| r.body).ok(), Some(b"[]".to_vec()));
        let seen = server.await.unwrap_or_default();
        assert!(
            seen.starts_with("GET /containers/json HTTP/1.1\r\nHost: docker\r\n"),
            "{seen}"
        );
        assert!(seen.contains("Connection: close\r\n"));
    }
}

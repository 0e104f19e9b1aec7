//! SNI: read the server name from a TLS ClientHello without consuming it.
//!
//! [`parse`] is pure: it reassembles the handshake message from as many TLS
//! records as it spans (a ClientHello may be fragmented), and finds the
//! `server_name` extension. [`peek_hello`] drives it with `MSG_PEEK` reads into
//! a bounded buffer, so the backend (passthrough) or the terminator still sees
//! the full handshake. [`HostMatcher`] decides whether a backend's `sni=`
//! value matches a hostname.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::config::HostnameMatching;

/// Largest ClientHello we wait for (records included).
pub const MAX_HELLO: usize = 16 * 1024;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// Why no hostname came out of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloError {
    /// The bytes so far are a valid prefix; more are needed.
    Incomplete,
    /// Not a TLS ClientHello, or a malformed one.
    Malformed(&'static str),
}

/// The hostname in a complete ClientHello (lower case, no trailing dot), or
/// `None` when it has no SNI extension.
pub fn parse(buf: &[u8]) -> Result<Option<String>, HelloError> {
    let msg = handshake_message(buf)?;
    client_hello_sni(&msg)
}

/// The first handshake message, reassembled from its records.
fn handshake_message(mut buf: &[u8]) -> Result<Vec<u8>, HelloError> {
    let mut msg = Vec::new();
    loop {
        if buf.len() < 5 {
            return Err(HelloError::Incomplete);
        }
        if buf[0] != CONTENT_HANDSHAKE {
            return Err(HelloError::Malformed("not a TLS handshake record"));
        }
        if buf[1] != 3 {
            return Err(HelloError::Malformed("unknown TLS record version"));
        }
        let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Err(HelloError::Malformed("bad TLS record length"));
        }
        let Some(payload) = buf.get(5..5 + len) else {
            return Err(HelloError::Incomplete);
        };
        msg.extend_from_slice(payload);
        buf = &buf[5 + len..];
        if msg.len() >= 4 {
            if msg[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(HelloError::Malformed(
                    "first handshake message is not a ClientHello",
                ));
            }
            let body = u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize;
            if body + 4 > MAX_HELLO {
                return Err(HelloError::Malformed("ClientHello too large"));
            }
            if msg.len() >= body + 4 {
                msg.truncate(body + 4);
                msg.drain(..4);
                return Ok(msg);
            }
        }
    }
}

/// A bounds-checked reader over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed("truncated ClientHello"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a 1- or 2-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn client_hello_sni(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == usize::from(EXT_SERVER_NAME) {
            return server_name(data).map(Some);
        }
    }
    Ok(None)
}

fn server_name(data: &[u8]) -> Result<String, HelloError> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == usize::from(NAME_TYPE_HOST) {
            let name = std::str::from_utf8(name)
                .ok()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or(HelloError::Malformed("server name is not a host name"))?;
            // "." (or ".."): no name left once the root dot is gone.
            let name = name.trim_end_matches('.');
            if name.is_empty() {
                return Err(HelloError::Malformed("server name is not a host name"));
            }
            return Ok(name.to_ascii_lowercase());
        }
    }
    Err(HelloError::Malformed(
        "server_name extension without a host name",
    ))
}

/// Peek at the ClientHello on `stream` for up to `timeout` and return its
/// hostname. Nothing is consumed. Errors: timeout, EOF before a complete
/// hello, a malformed or oversized hello.
pub async fn peek_hello(stream: &TcpStream, timeout: Duration) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; MAX_HELLO];
    let read = async {
        let mut seen = 0;
        loop {
            let ready = stream.ready(Interest::READABLE).await?;
            let closed = ready.is_read_closed();
            // A peek that saw no new byte clears the readiness, so the next
            // wait is for more data instead of a spin; after a FIN there is
            // no more data, so the hello is judged as it is.
            let peeked = stream.try_io(Interest::READABLE, || {
                let n = peek(stream, &mut buf)?;
                if n == seen && n != 0 && !closed {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            let n = match peeked {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            seen = n;
            match parse(&buf[..n]) {
                Ok(name) => return Ok(name),
                Err(HelloError::Malformed(why)) => return Err(invalid(why)),
                Err(HelloError::Incomplete) if closed || n == 0 => {
                    return Err(invalid("connection closed before a complete ClientHello"));
                }
                Err(HelloError::Incomplete) if n == buf.len() => {
                    return Err(invalid("ClientHello too large"));
                }
                Err(HelloError::Incomplete) => {}
            }
        }
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "no ClientHello within read_timeout",
        )
    })?
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn peek(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: buf is valid for writes of buf.len() bytes; the fd is open.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Matches backends' `sni=` values against a hostname.
#[derive(Debug, Clone)]
pub enum HostMatcher {
    /// Case-insensitive equality.
    Exact(String),
    /// The whole hostname must match (anchored, case-insensitive).
    Regexp(Option<regex::Regex>),
}

impl HostMatcher {
    /// The matcher for one backend's `sni=` value; a regexp that does not
    /// compile matches nothing (tests; the daemon uses [`Self::compile`]
    /// and leaves such backends out, [`crate::state::Plan::build`]).
    #[cfg(test)]
    pub fn new(strategy: HostnameMatching, pattern: &str) -> Self {
        Self::compile(strategy, pattern).unwrap_or(Self::Regexp(None))
    }

    /// The matcher, or why `pattern` is not a usable regexp (one line).
    pub fn compile(strategy: HostnameMatching, pattern: &str) -> Result<Self, String> {
        match strategy {
            HostnameMatching::Exact => Ok(Self::Exact(
                pattern.trim_end_matches('.').to_ascii_lowercase(),
            )),
            // An empty value: the backend has no name, and matches nothing.
            HostnameMatching::Regexp if pattern.is_empty() => Ok(Self::Regexp(None)),
            HostnameMatching::Regexp => regex::Regex::new(&format!("(?i)^(?:{pattern})$"))
                .map(|re| Self::Regexp(Some(re)))
                .map_err(|e| {
                    let why = crate::config::regex_error(&e);
                    let last = why.lines().rev().find(|l| !l.trim().is_empty());
                    format!(
                        "sni={pattern:?} is not a valid regexp (hostname_matching_strategy = \"regexp\"): {}",
                        last.unwrap_or("invalid").trim().trim_start_matches("error: ")
                    )
                }),
        }
    }

    /// `host` is already lower case.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => !name.is_empty() && name == host,
            Self::Regexp(re) => re.as_ref().is_some_and(|re| re.is_match(host)),
        }
    }
}

#[cfg(test)]
#[path = "sni_tests.rs"]
pub(super) mod tests;

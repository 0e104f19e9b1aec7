//! The HTTP/1.1 wire format, pure: request encoding, response heads (via
//! `httparse`), body framing and the chunked transfer-coding decoder.
//! Nothing here does I/O; every function is bounded by its input.

use std::fmt::Write as _;

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// A request, as written on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case token: `GET`, `POST`, ...
    pub method: String,
    /// Path and query, starting with `/`.
    pub target: String,
    /// `Host` header value (used unless `headers` has its own `Host`).
    pub host: String,
    /// Extra headers, in order. `Connection` and `Content-Length` here are
    /// ignored: the client always closes and frames the body itself.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, target: &str, host: &str) -> Self {
        Self {
            method: method.to_string(),
            target: target.to_string(),
            host: host.to_string(),
            ..Self::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The request bytes, or why they cannot be written (a CR, LF or space
    /// where it would split or forge a line).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        if self.method.is_empty() || !self.method.bytes().all(is_tchar) {
            return Err(format!("bad method {:?}", self.method));
        }
        if !self.target.starts_with('/') || self.target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("bad request target {:?}", self.target));
        }
        let own_host = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"));
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !own_host {
            check_value("Host", &self.host)?;
            let _ = write!(head, "Host: {}\r\n", self.host);
        }
        let mut agent = false;
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!("bad header name {name:?}"));
            }
            check_value(name, value)?;
            if name.eq_ignore_ascii_case("connection")
                || name.eq_ignore_ascii_case("content-length")
            {
                continue;
            }
            agent |= name.eq_ignore_ascii_case("user-agent");
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !agent {
            head.push_str(concat!(
                "User-Agent: betwixt/",
                env!("CARGO_PKG_VERSION"),
                "\r\n"
            ));
        }
        let sends_body =
            !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if sends_body {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

fn check_value(name: &str, value: &str) -> Result<(), String> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("bad value for header {name}"));
    }
    Ok(())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    /// Names as sent; values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

impl Head {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a response head from the start of `buf`: `Ok(None)` = incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(format!("response head larger than {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("unparsable response: {e}")),
    };
    if len > MAX_HEAD {
        return Err(format!("response head larger than {MAX_HEAD} bytes"));
    }
    let status = resp.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(format!("bad status code {status}"));
    }
    let headers = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok(Some(Head {
        status,
        reason: resp.reason.unwrap_or_default().to_string(),
        headers,
        len,
    }))
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes.
    Eof,
}

/// The body framing of a response to `method` (RFC 9112 §6.3).
pub fn framing(method: &str, head: &Head) -> Result<Framing, String> {
    if method.eq_ignore_ascii_case("HEAD")
        || head.status < 200
        || head.status == 204
        || head.status == 304
    {
        return Ok(Framing::Empty);
    }
    let encodings: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if let Some(last) = encodings.last() {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Eof
        });
    }
    let mut length = None;
    for (_, v) in head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for item in v.split(',').map(str::trim) {
            let n = parse_length(item).ok_or_else(|| format!("bad Content-Length {v:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::Eof, Framing::Length))
}

fn parse_length(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Incremental decoder of the chunked transfer coding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunked {
    state: State,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk: bytes still to come.
    Data(u64),
    /// After a chunk's data: expecting CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

impl Chunked {
    pub fn new() -> Self {
        Self::default()
    }

    /// The terminating chunk and trailers have been seen.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `buf`, appending data to `out`; returns how many bytes
    /// of `buf` were used. Unused bytes (an incomplete line) must be passed
    /// again with more data after them.
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Done => return Ok(used),
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..take]);
                    used += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::Size | State::DataEnd | State::Trailers => {
                    let Some(line) = line(rest)? else {
                        return Ok(used);
                    };
                    used += line.len();
                    self.state = self.after_line(trim_eol(line))?;
                }
            }
        }
    }

    fn after_line(&self, line: &[u8]) -> Result<State, String> {
        Ok(match self.state {
            State::Size => match chunk_size(line)? {
                0 => State::Trailers,
                n => State::Data(n),
            },
            State::DataEnd if line.is_empty() => State::Size,
            State::DataEnd => return Err("chunk data longer than its size".into()),
            State::Trailers if line.is_empty() => State::Done,
            other => other,
        })
    }
}

/// The next line of `buf` including its `\n`; `None` = not complete yet.
fn line(buf: &[u8]) -> Result<Option<&[u8]>, String> {
    match buf.iter().take(MAX_LINE).position(|&b| b == b'\n') {
        Some(i) => Ok(Some(&buf[..=i])),
        None if buf.len() >= MAX_LINE => Err(format!("chunk line longer than {MAX_LINE} bytes")),
        None => Ok(None),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `1a3f;ext=1` -> 0x1a3f.
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = hex.trim_ascii();
    let bad = || format!("bad chunk size {:?}", String::from_utf8_lossy(line));
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(hex).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

#[cfg(test)]
mod tests;

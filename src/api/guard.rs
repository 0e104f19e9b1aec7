//! Request framing checked at the front, before tiny_http sees a byte.
//!
//! tiny_http trusts a request's `Content-Length`: when a request is answered
//! without its body being read (a `401`, a `413`, any healthd answer), it
//! drains the rest with a buffer of the *declared* remaining size. One
//! unauthenticated request declaring `Content-Length: 99999999999999999`
//! aborts the process on that allocation (upstream tiny-http PR #290, not
//! released). So the front passes on only requests it has framed itself:
//!
//! * a head (request line and headers) must end within [`MAX_HEAD`] bytes
//!   and parse (httparse); else `431` or `400`;
//! * a body must be sized by `Content-Length` (one value, or several equal
//!   ones), at most the listener's limit; else `413`, or `411` for a chunked
//!   body, `400` for a bad length;
//! * the body's bytes are passed on as they come, then the next head.
//!
//! A refused request gets its answer from the front after the answers to
//! the requests before it, and the connection closes ([`Guard::feed`] is
//! pure; [`super::front`] does the I/O).

/// Longest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// Where the byte stream from the client stands.
#[derive(Debug, PartialEq)]
enum State {
    /// Collecting a head; the bytes so far are in `Guard::head`.
    Head,
    /// Passing on this many more body bytes.
    Body(u64),
    /// A request was refused: nothing more is passed on.
    Refused,
}

/// Why a request was refused, as the front answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The whole answer: a JSON error like the API's own, and
    /// `Connection: close`.
    pub fn response(&self) -> Vec<u8> {
        let reason = match self.status {
            400 => "Bad Request",
            411 => "Length Required",
            413 => "Payload Too Large",
            _ => "Request Header Fields Too Large",
        };
        let body = serde_json::json!({ "error": self.message }).to_string();
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// The framing state of one client connection.
pub struct Guard {
    state: State,
    head: Vec<u8>,
    body_limit: u64,
}

impl Guard {
    /// A guard that refuses bodies over `body_limit` bytes.
    pub fn new(body_limit: usize) -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            body_limit: body_limit as u64,
        }
    }

    /// Take `input` from the client; append what may go on to tiny_http to
    /// `out`. After an `Err` (and on every later call) nothing more is
    /// passed on.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
        match self.state {
            State::Refused => Err(Refusal::new(400, "request refused")),
            State::Body(left) => {
                let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[..n]);
                self.state = match left - n as u64 {
                    0 => State::Head,
                    rest => State::Body(rest),
                };
                match &input[n..] {
                    [] => Ok(()),
                    rest => self.feed(rest, out),
                }
            }
            State::Head => {
                let fresh_line = input.contains(&b'\n');
                self.head.extend_from_slice(input);
                if !fresh_line && self.head.len() <= MAX_HEAD {
                    // A head ends with a line feed: no need to parse again.
                    return Ok(());
                }
                self.heads(out).inspect_err(|_| {
                    self.state = State::Refused;
                    self.head = Vec::new();
                })
            }
        }
    }

    /// Pass on every whole request (head and body) collected in `head`.
    fn heads(&mut self, out: &mut Vec<u8>) -> Result<(), Refusal> {
        while let Some((end, body)) = self.head_end()? {
            out.extend(self.head.drain(..end));
            let n = self
                .head
                .len()
                .min(usize::try_from(body).unwrap_or(usize::MAX));
            out.extend(self.head.drain(..n));
            if (n as u64) < body {
                self.state = State::Body(body - n as u64);
                return Ok(());
            }
            if self.head.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// `Some((head length, body length))` once the collected bytes hold a
    /// whole head; `None` while more are needed.
    fn head_end(&self) -> Result<Option<(usize, u64)>, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let end = match req.parse(&self.head) {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) if self.head.len() > MAX_HEAD => {
                return Err(too_big());
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::new(
                    431,
                    format!("more than {MAX_HEADERS} headers"),
                ));
            }
            Err(e) => return Err(Refusal::new(400, format!("bad request: {e}"))),
        };
        if end > MAX_HEAD {
            return Err(too_big());
        }
        let body = body_length(req.headers)?;
        if body > self.body_limit {
            return Err(Refusal::new(
                413,
                format!("body larger than {} bytes", self.body_limit),
            ));
        }
        Ok(Some((end, body)))
    }
}

fn too_big() -> Refusal {
    Refusal::new(431, format!("request head larger than {MAX_HEAD} bytes"))
}

/// The body's length from `Content-Length`; 0 without one.
fn body_length(headers: &[httparse::Header]) -> Result<u64, Refusal> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Refusal::new(
                411,
                "chunked request bodies are not accepted; send Content-Length",
            ));
        }
        if !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let n = std::str::from_utf8(h.value)
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        match (n, length) {
            (None, _) => return Err(Refusal::new(400, "bad Content-Length")),
            (Some(n), Some(seen)) if n != seen => {
                return Err(Refusal::new(400, "conflicting Content-Length headers"));
            }
            (Some(n), _) => length = Some(n),
        }
    }
    Ok(length.unwrap_or(0))
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;

//! A bound on request heads, checked by the front before tiny_http reads
//! them. tiny_http buffers a request line or header of any length (one
//! 300 MiB header line took 300 MiB of memory) before betwixt sees the
//! request, so before its Basic auth: any client could exhaust memory.
//!
//! Pure: [`HeadGuard::feed`] follows the bytes a client sends, request
//! after request: a head must end (`\r\n\r\n`) within [`MAX_HEAD`] bytes;
//! a body (`Content-Length` or chunked, as tiny_http reads it) is skipped
//! without being kept.

use crate::http::wire::Chunked;

/// Largest request head (request line and headers) let through.
pub const MAX_HEAD: usize = 64 * 1024;

/// Where the client is in its stream of requests.
#[derive(Debug, Default)]
pub struct HeadGuard {
    state: State,
    /// The head so far (at most [`MAX_HEAD`] bytes).
    head: Vec<u8>,
    /// Chunked body bytes not yet decoded (an incomplete size line).
    pending: Vec<u8>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    Body(u64),
    Chunked(Chunked),
}

impl HeadGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow `data`, the next bytes from the client; `Err` = close the
    /// connection.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match &mut self.state {
                State::Head => data = self.head_bytes(data)?,
                State::Body(left) => {
                    let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(dec) => {
                    self.pending.extend_from_slice(data);
                    data = &[];
                    let mut sink = Vec::new();
                    let used = dec.decode(&self.pending, &mut sink)?;
                    self.pending.drain(..used);
                    if dec.done() {
                        self.state = State::Head;
                        let rest = std::mem::take(&mut self.pending);
                        return self.feed(&rest);
                    }
                }
            }
        }
        Ok(())
    }

    /// Head bytes up to the end of the head; returns what follows it.
    fn head_bytes<'a>(&mut self, data: &'a [u8]) -> Result<&'a [u8], String> {
        for (i, &b) in data.iter().enumerate() {
            self.head.push(b);
            if self.head.ends_with(b"\r\n\r\n") {
                self.state = body_of(&self.head);
                self.head.clear();
                return Ok(&data[i + 1..]);
            }
            if self.head.len() >= MAX_HEAD {
                return Err(format!("request head larger than {MAX_HEAD} bytes"));
            }
        }
        Ok(&[])
    }
}

/// What follows a head: a chunked body, `Content-Length` bytes, or none.
fn body_of(head: &[u8]) -> State {
    let text = String::from_utf8_lossy(head);
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            return State::Chunked(Chunked::new());
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<u64>().ok();
        }
    }
    match length {
        Some(n) if n > 0 => State::Body(n),
        _ => State::Head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz;

    #[test]
    fn heads_bodies_and_chunks_in_any_slices() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /servers/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
            PUT /servers/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
            GET /ping HTTP/1.1\r\n\r\n";
        for size in [1, 2, 7, stream.len()] {
            let mut g = HeadGuard::new();
            for part in stream.chunks(size) {
                g.feed(part).expect("within bounds");
            }
            assert!(
                matches!(g.state, State::Head) && g.head.is_empty(),
                "{size}"
            );
        }
    }

    #[test]
    fn a_head_without_an_end_is_cut() {
        let mut g = HeadGuard::new();
        g.feed(b"GET / HTTP/1.1\r\nX: ").expect("so far so good");
        let line = vec![b'a'; 1 << 20];
        let e = g.feed(&line).expect_err("too long");
        assert!(e.contains("larger than"), "{e}");
        assert!(g.head.len() <= MAX_HEAD);
        // A body of any declared size passes without being kept.
        let mut g = HeadGuard::new();
        g.feed(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n")
            .expect("head");
        g.feed(&line).expect("body");
        assert!(g.head.is_empty() && g.pending.is_empty());
    }

    #[test]
    fn fuzz_request_streams() {
        let samples: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"PUT /y HTTP/1.1\r\ntransfer-encoding: gzip, Chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"\r\n\r\nGET /ping HTTP/1.0\r\n\r\n",
        ];
        fuzz::run("api head guard", 64, 800, samples, |bytes| {
            let mut g = HeadGuard::new();
            for part in bytes.chunks(1 + bytes.len() % 97) {
                if g.feed(part).is_err() {
                    break;
                }
                assert!(g.head.len() < MAX_HEAD);
                assert!(g.pending.len() <= part.len() + 4096, "{}", g.pending.len());
            }
        });
    }
}

//! Bounded fuzzing of the HTTP client's pure parts and of a whole response
//! read: URLs, percent-decoding, request encoding, response heads, body
//! framing, the chunked decoder (fed whole and in pieces) and
//! `read_response` over replies that arrive in random slices.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::client::{Limit, read_response};
use super::url::percent_decode;
use super::wire::{self, Chunked, Framing, Request};
use super::{Error, Url};
use crate::fuzz;

#[test]
fn fuzz_urls() {
    let samples = [
        "http://127.0.0.1:8080/a/b?c=d#frag",
        "HTTPS://[::1]:443",
        "https://[fe80::1%25eth0]/",
        "http://example.test?x",
        "http://u:p@h/",
        "http://h:99999/",
    ];
    fuzz::run_str("url", 31, 1000, &samples, |t| {
        if let Ok(u) = Url::parse(t) {
            assert!(u.target.starts_with('/'), "{u:?}");
            // What parses can be written as a request.
            let r = Request::new("GET", &u.target, &u.host_header());
            assert!(r.encode().is_ok(), "{u:?}");
        }
        let _ = percent_decode(t);
    });
}

#[test]
fn fuzz_request_encoding() {
    // No field can add a line to the request: what encodes parses back
    // with the same headers.
    let parts = [
        "GET",
        "/x?y",
        "h",
        "X-A",
        "v a l",
        "\r\nX-Evil: 1",
        " ",
        "\0",
    ];
    let samples: Vec<&str> = parts.to_vec();
    let mut rng = fuzz::Rng::new(32);
    for _ in 0..1000 {
        let mut field = || {
            let mut v = rng.pick(&samples).as_bytes().to_vec();
            fuzz::mutate(&mut rng, &mut v, &[]);
            v.truncate(200);
            String::from_utf8_lossy(&v).into_owned()
        };
        let req = Request::new(&field(), &field(), &field())
            .header(&field(), &field())
            .body(field());
        let Ok(bytes) = req.encode() else { continue };
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut slots);
        let status = parsed.parse(&bytes);
        assert!(
            matches!(status, Ok(httparse::Status::Complete(_))),
            "{req:?} -> {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let names: Vec<&str> = parsed.headers.iter().map(|h| h.name).collect();
        let extra = names
            .iter()
            .filter(|n| n.eq_ignore_ascii_case("x-evil"))
            .count();
        assert_eq!(extra, 0, "{req:?} -> {names:?}");
    }
}

const HEADS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.0 404 Not Found\r\n\r\nbody until close",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nxx",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nab",
];

#[test]
fn fuzz_response_heads() {
    fuzz::run("response head", 33, 1000, HEADS, |bytes| {
        if let Ok(Some(head)) = wire::parse_head(bytes) {
            assert!(head.len <= bytes.len() && head.len <= wire::MAX_HEAD);
            assert!((100..=999).contains(&head.status));
            assert_eq!(wire::framing("HEAD", &head), Ok(Framing::Empty));
            let _ = wire::framing("GET", &head);
        }
    });
}

/// Decode `bytes` through one decoder, in slices of the given sizes.
fn decode_in(bytes: &[u8], sizes: &mut impl FnMut() -> usize) -> Result<(Vec<u8>, bool), String> {
    let mut dec = Chunked::new();
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < bytes.len() {
        let n = sizes().clamp(1, bytes.len() - fed);
        pending.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        let used = dec.decode(&pending, &mut out)?;
        assert!(used <= pending.len());
        pending.drain(..used);
        if dec.done() {
            break;
        }
    }
    Ok((out, dec.done()))
}

#[test]
fn fuzz_chunked() {
    let samples: &[&[u8]] = &[
        b"5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n",
        b"3\nabc\n0\n\n",
        b"ffffffffffffff\r\n",
        b"0000000000000001\r\nx\r\n0\r\n\r\n",
    ];
    let mut rng = fuzz::Rng::new(34);
    fuzz::run("chunked", 35, 250, samples, |bytes| {
        let whole = decode_in(bytes, &mut || usize::MAX);
        let most = if rng.one_in(2) { 7 } else { 700 };
        let sliced = decode_in(bytes, &mut || 1 + rng.below(most));
        // The same answer however the bytes arrive (an error may come
        // earlier or later, but it comes).
        match (&whole, &sliced) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("whole {whole:?} vs sliced {sliced:?}"),
        }
    });
}

/// A reader that hands out its bytes in slices of random sizes.
struct Drip {
    data: Vec<u8>,
    at: usize,
    rng: fuzz::Rng,
}

impl AsyncRead for Drip {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let max = 1 + self.rng.below(3000);
        let n = (self.data.len() - self.at).min(buf.remaining()).min(max);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

#[test]
fn fuzz_read_response() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut rng = fuzz::Rng::new(36);
    fuzz::run("read_response", 37, 600, HEADS, |bytes| {
        let mut r = Drip {
            data: bytes.to_vec(),
            at: 0,
            rng: fuzz::Rng::new(rng.next_u64()),
        };
        let cap = *rng.pick(&[0usize, 1, 16, 4096]);
        let limit = if rng.one_in(2) {
            Limit::Truncate(cap)
        } else {
            Limit::Fail(cap)
        };
        let method = *rng.pick(&["GET", "HEAD", "POST"]);
        match rt.block_on(read_response(&mut r, method, limit)) {
            Ok(resp) => assert!(resp.body.len() <= cap, "{} > {cap}", resp.body.len()),
            Err(Error::BadResponse(why)) => assert!(!why.is_empty()),
            Err(Error::TooLarge(_)) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    });
}

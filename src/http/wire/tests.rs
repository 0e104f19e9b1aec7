use super::*;

fn head(text: &str) -> Head {
    match parse_head(text.as_bytes()) {
        Ok(Some(h)) => h,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn encodes_a_request_with_host_close_and_length() {
    let req = Request::new("POST", "/hook?x=1", "10.0.0.1:8080")
        .header("Content-Type", "application/json")
        .body(b"{}".to_vec());
    let text = String::from_utf8(req.encode().unwrap_or_default()).unwrap_or_default();
    assert!(
        text.starts_with("POST /hook?x=1 HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"),
        "{text}"
    );
    assert!(text.contains("Content-Type: application/json\r\n"));
    assert!(text.contains("Content-Length: 2\r\n"));
    assert!(text.contains("User-Agent: betwixt/"));
    assert!(text.ends_with("Connection: close\r\n\r\n{}"), "{text}");
}

#[test]
fn a_get_has_no_length_and_own_host_and_agent_win() {
    let req = Request::new("GET", "/", "ignored")
        .header("host", "mine")
        .header("User-Agent", "probe")
        .header("Connection", "keep-alive")
        .header("Content-Length", "99");
    let text = String::from_utf8(req.encode().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        text,
        "GET / HTTP/1.1\r\nhost: mine\r\nUser-Agent: probe\r\nConnection: close\r\n\r\n"
    );
    let empty_post = Request::new("POST", "/", "h").encode().unwrap_or_default();
    assert!(String::from_utf8_lossy(&empty_post).contains("Content-Length: 0\r\n"));
}

#[test]
fn refuses_to_write_forged_lines() {
    let bad = [
        Request::new("GE T", "/", "h"),
        Request::new("", "/", "h"),
        Request::new("GET", "x", "h"),
        Request::new("GET", "/a b", "h"),
        Request::new("GET", "/\r\nX: 1", "h"),
        Request::new("GET", "/", "h\r\nX: 1"),
        Request::new("GET", "/", "h").header("X\r\n", "1"),
        Request::new("GET", "/", "h").header("X", "1\nY: 2"),
        Request::new("GET", "/", "h").header("", "1"),
    ];
    for req in bad {
        assert!(req.encode().is_err(), "{req:?}");
    }
}

#[test]
fn parses_heads_and_finds_headers() {
    let h = head("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello");
    assert_eq!(h.status, 503);
    assert_eq!(h.reason, "Service Unavailable");
    assert_eq!(h.header("content-length"), Some("5"));
    assert_eq!(h.header("x-a"), Some("b"));
    assert_eq!(h.len, 65, "everything but the body");
    assert_eq!(head("HTTP/1.0 200 \r\n\r\n").status, 200);
}

#[test]
fn incomplete_heads_wait_and_junk_fails() {
    assert_eq!(parse_head(b""), Ok(None));
    assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nA: b"), Ok(None));
    for junk in [
        &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"\x16\x03\x01\x00\xff",
        b"HTTP/9.9 200 OK\r\n\r\n",
    ] {
        assert!(
            parse_head(junk).is_err(),
            "{:?}",
            String::from_utf8_lossy(junk)
        );
    }
}

#[test]
fn huge_heads_fail_instead_of_growing() {
    let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    assert!(parse_head(&big).unwrap_err().contains("larger than"));
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(parse_head(many.as_bytes()).is_err());
}

#[test]
fn framing_follows_rfc_9112() {
    let f = |method, text: &str| framing(method, &head(text));
    assert_eq!(
        f("GET", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
        Ok(Framing::Length(12))
    );
    assert_eq!(
        f("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
        Ok(Framing::Empty)
    );
    assert_eq!(
        f("GET", "HTTP/1.1 204 No\r\nContent-Length: 12\r\n\r\n"),
        Ok(Framing::Empty)
    );
    assert_eq!(f("GET", "HTTP/1.1 304 No\r\n\r\n"), Ok(Framing::Empty));
    assert_eq!(f("GET", "HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Eof));
    let chunked =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(f("GET", chunked), Ok(Framing::Chunked));
    assert_eq!(
        f("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Ok(Framing::Eof)
    );
    assert_eq!(
        f("GET", "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n"),
        Ok(Framing::Length(4))
    );
    for bad in ["4, 5", "-1", "+4", "0x10", "", "99999999999999999999"] {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert!(f("GET", &text).is_err(), "{bad:?}");
    }
    let two = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n";
    assert!(f("GET", two).is_err());
}

/// Decode `input` fed in pieces of `step` bytes, as a socket would.
fn dechunk(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), String> {
    let mut dec = Chunked::new();
    let (mut out, mut pending) = (Vec::new(), Vec::new());
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        let used = dec.decode(&pending, &mut out)?;
        pending.drain(..used);
    }
    Ok((out, dec.done()))
}

#[test]
fn chunked_decodes_in_any_split() {
    let wire = b"4\r\nWiki\r\n5;name=v\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nEXTRA";
    for step in [1, 2, 3, 7, 64, 1024] {
        let (body, done) = dechunk(wire, step).unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
        assert!(done);
    }
    let mut dec = Chunked::new();
    let mut out = Vec::new();
    assert_eq!(dec.decode(b"0\r\n\r\nleft over", &mut out), Ok(5));
    assert!(dec.done() && out.is_empty());
}

#[test]
fn chunked_without_end_is_not_done() {
    let (body, done) = dechunk(b"3\r\nabc\r\n", 2).unwrap_or_default();
    assert_eq!(body, b"abc");
    assert!(!done);
}

#[test]
fn chunked_rejects_malformed_input() {
    let bad: [&[u8]; 6] = [
        b"z\r\n",
        b"\r\n",
        b"-1\r\n",
        b"3\r\nabcdef\r\n",
        b"ffffffffffffffffff\r\n",
        b"0x3\r\nabc\r\n",
    ];
    for wire in bad {
        assert!(
            dechunk(wire, 1).is_err(),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let long = vec![b'1'; 10_000];
    assert!(dechunk(&long, 100).unwrap_err().contains("longer than"));
}

#[test]
fn chunked_huge_sizes_stream_without_allocating_them() {
    let mut dec = Chunked::new();
    let mut out = Vec::new();
    let used = dec.decode(b"fffffffffffffff\r\nabc", &mut out);
    assert_eq!(used, Ok(20));
    assert_eq!(out, b"abc");
    assert!(!dec.done());
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2000 {
        let len = (x % 300) as usize;
        let mut buf = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(b"0123456789abcdefHTTP/1. \r\n:;x"[(x % 29) as usize]);
        }
        let _ = parse_head(&buf);
        let _ = dechunk(&buf, 1 + (x % 5) as usize);
        if let Ok(Some(h)) = parse_head(&buf) {
            let _ = framing("GET", &h);
        }
    }
}

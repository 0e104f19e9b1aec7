use super::*;

const LIMIT: usize = 1 << 20;

/// Feed `chunks` one after another; what was passed on, and the refusal.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<Refusal>) {
    let mut guard = Guard::new(LIMIT);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(r) = guard.feed(c, &mut out) {
            return (out, Some(r));
        }
    }
    (out, None)
}

#[test]
fn whole_requests_pass_unchanged_in_any_split() {
    let two = b"POST /servers/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /servers HTTP/1.1\r\nHost: x\r\n\r\n";
    for cut in 0..two.len() {
        let (out, refusal) = run(&[&two[..cut], &two[cut..]]);
        assert_eq!(refusal, None, "cut at {cut}");
        assert_eq!(out, two, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = two.chunks(1).collect();
    assert_eq!(run(&bytes), (two.to_vec(), None));
}

#[test]
fn a_head_is_held_back_until_it_is_whole() {
    let mut guard = Guard::new(LIMIT);
    let mut out = Vec::new();
    guard
        .feed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n", &mut out)
        .unwrap();
    assert!(out.is_empty());
    guard.feed(b"\r\nab", &mut out).unwrap();
    assert_eq!(out, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab");
}

#[test]
fn a_huge_declared_body_is_refused_before_anything_passes() {
    let req = b"POST /servers/a HTTP/1.1\r\nContent-Length: 99999999999999999\r\n\r\nabc";
    let (out, refusal) = run(&[req]);
    assert!(out.is_empty());
    let refusal = refusal.unwrap();
    assert_eq!(refusal.status, 413);
    let text = String::from_utf8(refusal.response()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with(r#"{"error":"body larger than 1048576 bytes"}"#));
}

#[test]
fn the_limit_itself_passes_one_more_byte_does_not() {
    let at = format!("PUT / HTTP/1.1\r\nContent-Length: {LIMIT}\r\n\r\n");
    assert_eq!(run(&[at.as_bytes()]), (at.clone().into_bytes(), None));
    let over = format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", LIMIT + 1);
    assert_eq!(run(&[over.as_bytes()]).1.unwrap().status, 413);
}

#[test]
fn bad_lengths_and_chunked_bodies_are_refused() {
    let cases: [(&[u8], u16); 7] = [
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 999999999999999999999999\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            411,
        ),
        (b"\x00\x01garbage\r\n\r\n", 400),
    ];
    for (req, status) in cases {
        let (out, refusal) = run(&[req]);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(req));
        assert_eq!(refusal.map(|r| r.status), Some(status));
    }
    let same = b"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok";
    assert_eq!(run(&[same]), (same.to_vec(), None));
}

#[test]
fn oversized_heads_and_too_many_headers_get_431() {
    let endless = vec![b'a'; MAX_HEAD + 1];
    let (out, refusal) = run(&[b"GET /", &endless]);
    assert!(out.is_empty());
    assert_eq!(refusal.unwrap().status, 431);
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(run(&[many.as_bytes()]).1.unwrap().status, 431);
}

#[test]
fn after_a_refusal_nothing_more_passes() {
    let mut guard = Guard::new(LIMIT);
    let mut out = Vec::new();
    let first = b"GET /a HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
    assert_eq!(guard.feed(first, &mut out).unwrap_err().status, 400);
    assert_eq!(
        out, b"GET /a HTTP/1.1\r\n\r\n",
        "the request before still passes"
    );
    assert!(guard.feed(b"GET /b HTTP/1.1\r\n\r\n", &mut out).is_err());
    assert_eq!(out, b"GET /a HTTP/1.1\r\n\r\n");
}

#[test]
fn random_input_never_panics_and_never_passes_a_large_body() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\n",
        b"Content-Length: 4\r\n",
        b"Content-Length: 18446744073709551615\r\n",
        b"\r\n",
        b"\n",
        b"abcd",
        b"Transfer-Encoding: chunked\r\n",
        b"\x00\xff",
    ];
    for _ in 0..2000 {
        let mut guard = Guard::new(16);
        let mut out = Vec::new();
        for _ in 0..(next() % 12) {
            let piece = pieces[(next() % pieces.len() as u64) as usize];
            if guard.feed(piece, &mut out).is_err() {
                break;
            }
        }
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        // As a header of its own (`abcdTransfer-Encoding` is another header).
        assert!(
            !has(b"\nContent-Length: 18446744073709551615"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            !has(b"\nTransfer-Encoding"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}

use super::*;

/// A ClientHello body with the given extensions.
pub(in crate::proxy) fn hello_body(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend([7u8; 32]);
    b.push(0); // session id
    b.extend([0, 2, 0x13, 0x01]); // one cipher suite
    b.extend([1, 0]); // null compression
    let mut e = Vec::new();
    for (kind, data) in exts {
        e.extend(kind.to_be_bytes());
        e.extend((data.len() as u16).to_be_bytes());
        e.extend(data);
    }
    b.extend((e.len() as u16).to_be_bytes());
    b.extend(e);
    b
}

/// The server_name extension for `name`.
pub(in crate::proxy) fn sni_ext(name: &str) -> (u16, Vec<u8>) {
    let mut entry = vec![0u8];
    entry.extend((name.len() as u16).to_be_bytes());
    entry.extend(name.as_bytes());
    let mut data = (entry.len() as u16).to_be_bytes().to_vec();
    data.extend(entry);
    (0, data)
}

/// Handshake message split into records of at most `chunk` bytes.
pub(in crate::proxy) fn records(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut msg = vec![1u8];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    let mut out = Vec::new();
    for part in msg.chunks(chunk) {
        out.extend([22, 3, 1]);
        out.extend((part.len() as u16).to_be_bytes());
        out.extend(part);
    }
    out
}

#[test]
fn finds_the_host_name_in_one_record() {
    let hello = records(
        &hello_body(&[(10, vec![0, 2, 0, 29]), sni_ext("Api.Example.COM.")]),
        16384,
    );
    assert_eq!(parse(&hello), Ok(Some("api.example.com".into())));
}

#[test]
fn reassembles_a_hello_fragmented_over_records() {
    let hello = records(&hello_body(&[sni_ext("a.example")]), 7);
    assert_eq!(parse(&hello), Ok(Some("a.example".into())));
}

#[test]
fn every_strict_prefix_is_incomplete() {
    let hello = records(&hello_body(&[sni_ext("a.example")]), 20);
    for n in 0..hello.len() {
        assert_eq!(
            parse(&hello[..n]),
            Err(HelloError::Incomplete),
            "prefix {n}"
        );
    }
}

#[test]
fn no_extension_means_no_name() {
    assert_eq!(
        parse(&records(&hello_body(&[(10, vec![0, 0])]), 16384)),
        Ok(None)
    );
    let mut bare = hello_body(&[]);
    bare.truncate(bare.len() - 2); // no extensions block at all
    assert_eq!(parse(&records(&bare, 16384)), Ok(None));
}

#[test]
fn garbage_is_malformed_not_incomplete() {
    assert!(matches!(
        parse(b"GET / HTTP/1.1\r\n\r\n"),
        Err(HelloError::Malformed(_))
    ));
    assert!(matches!(
        parse(&[22, 3, 1, 0, 0]),
        Err(HelloError::Malformed(_))
    ));
    // A server hello (type 2) instead of a client hello.
    let mut h = records(&hello_body(&[]), 16384);
    h[5] = 2;
    assert!(matches!(parse(&h), Err(HelloError::Malformed(_))));
    // An extension length running past the message.
    let mut body = hello_body(&[sni_ext("x")]);
    let n = body.len();
    body[n - 1 - "x".len() - 2] = 200;
    assert!(matches!(
        parse(&records(&body, 16384)),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn oversized_hello_is_refused() {
    let big = hello_body(&[(21, vec![0; 17000])]);
    assert!(matches!(
        parse(&records(&big, 16384)),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn exact_matching_ignores_case_and_empty_patterns() {
    let m = HostMatcher::new(HostnameMatching::Exact, "App.Example");
    assert!(m.matches("app.example"));
    assert!(!m.matches("app.example.org"));
    assert!(!HostMatcher::new(HostnameMatching::Exact, "").matches(""));
}

#[test]
fn regexp_matching_is_anchored() {
    let m = HostMatcher::new(HostnameMatching::Regexp, r"[a-z]+\.example");
    assert!(m.matches("www.example"));
    assert!(!m.matches("www.example.evil"));
    assert!(!m.matches("x.www.example1"));
    assert!(HostMatcher::new(HostnameMatching::Regexp, r".*\.example").matches("A.EXAMPLE"));
    assert!(!HostMatcher::new(HostnameMatching::Regexp, "(").matches("("));
}

#[test]
fn a_regexp_that_does_not_compile_is_an_error_naming_it() {
    let e = HostMatcher::compile(HostnameMatching::Regexp, "a(b").unwrap_err();
    assert!(e.starts_with("sni=\"a(b\" is not a valid regexp"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(HostMatcher::compile(HostnameMatching::Exact, "a(b").is_ok());
    assert!(HostMatcher::compile(HostnameMatching::Regexp, "").is_ok());
}

//! `http://host:port/path?query` and `https://...` URLs (pure).
//!
//! Only what a client needs to dial and to write a request line: scheme,
//! host (a name, an IPv4 literal or a bracketed IPv6 literal), port
//! (default 80/443), and the request target (path and query, `/` if
//! empty). User info (`user:pass@`) is refused rather than silently sent
//! nowhere; a `#fragment` is dropped. The host is resolved where it is
//! dialled ([`super::fetch`], through [`crate::resolve`]).

use std::fmt;

/// A parsed `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        // Quoted without user info and query: they may hold secrets. An
        // `@` left (user info not told apart, as in `htps//u:pass@h/`)
        // may still be a password: then not quoted at all.
        let shown = crate::config::secrets::url_for_logs(text);
        let hide = shown.contains('@');
        let bad = |why: &str| {
            if hide {
                format!("the URL (not shown: it may hold a password): {why}")
            } else {
                format!("\"{shown}\": {why}")
            }
        };
        let (https, rest) = if let Some(r) = strip_prefix_ci(text, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(text, "https://") {
            (true, r)
        } else {
            return Err(bad("expected an http:// or https:// URL"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            // Not quoted: the user info may hold a password.
            return Err("user info (user:password@) is not supported".into());
        }
        let (host, port) = split_authority(authority).map_err(|e| {
            // The detail quotes a piece of the host or port: a password
            // when the user info could not be told apart.
            if hide {
                bad("bad host or port")
            } else {
                bad(&e)
            }
        })?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters in the path"));
        }
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(Url {
            https,
            host,
            port,
            target,
        })
    }

    /// The value of the `Host` header: brackets around IPv6, the port only
    /// when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        host_header(&self.host, self.port, self.https)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let host = bracketed(&self.host);
        write!(f, "{scheme}://{host}:{}{}", self.port, self.target)
    }
}

/// `Host` header value for `host` (name or IP literal without brackets).
pub fn host_header(host: &str, port: u16, https: bool) -> String {
    let default = if https { 443 } else { 80 };
    let host = bracketed(host);
    if port == default {
        host
    } else {
        format!("{host}:{port}")
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `%XX` escapes decoded (invalid UTF-8 replaced); other bytes as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(h), Some(l)) if hex(*h).is_some() && hex(*l).is_some() => {
                let (h, l) = (hex(*h).unwrap_or(0), hex(*l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_authority(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed \"[\" in the host")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("\"{v6}\" is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after \"]\"")?),
        };
        (v6.to_string(), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let name_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._:".contains(&b);
    if !host.bytes().all(name_ok) {
        return Err(format!("bad host \"{host}\""));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("bad port \"{p}\"")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(https: bool, host: &str, port: u16, target: &str) -> Url {
        Url {
            https,
            host: host.into(),
            port,
            target: target.into(),
        }
    }

    #[test]
    fn parses_the_usual_forms() {
        let cases = [
            (
                "http://127.0.0.1:8500/v1/health",
                url(false, "127.0.0.1", 8500, "/v1/health"),
            ),
            ("https://example.com", url(true, "example.com", 443, "/")),
            (
                "http://example.com?a=1",
                url(false, "example.com", 80, "/?a=1"),
            ),
            ("HTTP://h/p?q=1#frag", url(false, "h", 80, "/p?q=1")),
            ("http://[::1]:9000/x", url(false, "::1", 9000, "/x")),
            ("https://[fe80::1]/", url(true, "fe80::1", 443, "/")),
            ("http://h:80/a/b/", url(false, "h", 80, "/a/b/")),
        ];
        for (text, want) in cases {
            assert_eq!(Url::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_bad_urls() {
        let bad = [
            "",
            "ftp://h/",
            "http://",
            "http:///path",
            "http://h:/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:+80/",
            "http://h:x/",
            "http://[::1/",
            "http://[nope]/",
            "http://[::1]x/",
            "http://user:pw@h/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://h\u{e9}/",
            "https:/h",
        ];
        for text in bad {
            assert!(Url::parse(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn errors_quote_the_url_without_user_info_or_query() {
        for text in [
            "ftp://u:S1@h/x?token=S2",
            "http://h:x/p?token=S2",
            "http://h:1/a b?k=S2",
        ] {
            let e = Url::parse(text).unwrap_err();
            assert!(!e.contains("S1") && !e.contains("S2"), "{e}");
        }
    }

    #[test]
    fn host_header_brackets_v6_and_skips_default_ports() {
        let u = |t| Url::parse(t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u("http://h/").host_header(), "h");
        assert_eq!(u("http://h:8080/").host_header(), "h:8080");
        assert_eq!(u("https://h:443/").host_header(), "h");
        assert_eq!(u("https://h:80/").host_header(), "h:80");
        assert_eq!(u("http://[::1]:81/").host_header(), "[::1]:81");
        assert_eq!(u("http://[::1]:81/x").to_string(), "http://[::1]:81/x");
    }

    #[test]
    fn huge_and_odd_input_does_not_panic() {
        let long = format!("http://{}/", "a".repeat(1 << 20));
        assert!(Url::parse(&long).is_ok());
        let colons = format!("http://{}", ":".repeat(10_000));
        assert!(Url::parse(&colons).is_err());
        for text in [
            "http://[",
            "http://]",
            "https://[]:1",
            "http://\u{1F600}",
            "h\u{e9}llo://",
        ] {
            let _ = Url::parse(text);
        }
    }
}

//! `betwixt check URL`: a URL and options as a [`Check`] and its [`Target`]
//! (pure), so the one-shot command runs the daemon's own check code.
//!
//! - `http://host[:port][/path]`, `https://...` (`--insecure` skips
//!   certificate checks): GET, healthy on 200-399;
//! - `tcp://host:port`: a connect (kind `ping`);
//! - `udp://host:port --send S --expect S`: one datagram, the reply must
//!   start with S (Go string escapes, like `probe_send`);
//! - `icmp://host`: 3 echo requests.

use std::collections::BTreeMap;

use super::Target;
use crate::config::{Check, HttpCheck, Probe, ProbeExpect, ProbeProtocol, unescape};

/// Options that shape some kinds of check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub insecure: bool,
    pub send: Option<String>,
    pub expect: Option<String>,
}

/// The check a URL asks for; `Err` is a usage error.
pub fn parse(url: &str, opts: &Options) -> Result<(Check, Target), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?}: expected SCHEME://HOST..."))?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        "icmp" => Some(0),
        "tcp" | "udp" => None,
        other => {
            return Err(format!(
                "unknown scheme {other:?} (http, https, tcp, udp, icmp)"
            ));
        }
    };
    let (host, port) = host_port(authority, default_port)?;
    if opts.insecure && scheme != "https" {
        return Err("--insecure is only for https://".into());
    }
    if (opts.send.is_some() || opts.expect.is_some()) && scheme != "udp" {
        return Err("--send and --expect are only for udp://".into());
    }
    if !matches!(scheme.as_str(), "http" | "https") && !matches!(path, "" | "/") {
        return Err(format!("{scheme}:// takes no path"));
    }
    let target = Target::new(&host, port);
    let check = match scheme.as_str() {
        "http" | "https" => Check::Http(http(path, scheme == "https", opts.insecure)),
        "tcp" => Check::Ping,
        "udp" => udp(opts)?,
        _ => Check::Icmp { count: 3 },
    };
    Ok((check, target))
}

fn http(path: &str, tls: bool, insecure: bool) -> HttpCheck {
    let path = if path.is_empty() { "/" } else { path };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    HttpCheck {
        path,
        method: "GET".into(),
        headers: BTreeMap::new(),
        host: None,
        tls,
        insecure_skip_verify: insecure,
        expected_status: vec![(200, 399)],
        contains: None,
    }
}

fn udp(opts: &Options) -> Result<Check, String> {
    let expect = opts
        .expect
        .as_deref()
        .ok_or("udp:// needs --expect (the start of the reply)")?;
    let expect = unescape(expect).map_err(|e| format!("--expect: {e}"))?;
    if expect.is_empty() || expect.len() > super::probe::MAX_RECV {
        return Err(format!("--expect: 1-{} bytes", super::probe::MAX_RECV));
    }
    let send = unescape(opts.send.as_deref().unwrap_or("")).map_err(|e| format!("--send: {e}"))?;
    Ok(Check::Probe(Probe {
        protocol: ProbeProtocol::Udp,
        send,
        read_len: expect.len(),
        expect: ProbeExpect::StartsWith(expect),
        tls_insecure: false,
    }))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn host_port(authority: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{authority:?}: missing ]"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or("expected :PORT after ]")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(format!("{authority:?}: write IPv6 addresses as [addr]")),
            None => (authority, None),
        }
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!("{authority:?}: expected HOST or HOST:PORT"));
    }
    // A name, an IPv4 or a bracketed IPv6 address (`]` alone was a host,
    // and an empty one once its brackets were trimmed).
    let full = if authority.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    crate::discovery::check_host(&full)?;
    let port = match (port, default) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port {p:?}"))?,
        (None, Some(d)) => d,
        (None, None) => return Err("this scheme needs HOST:PORT".into()),
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str, opts: &Options) -> (Check, Target) {
        parse(url, opts).unwrap()
    }

    #[test]
    fn http_and_https() {
        let (c, t) = ok("http://127.0.0.1:8080/healthz?x=1", &Options::default());
        let Check::Http(h) = c else { panic!("http") };
        assert_eq!((h.path.as_str(), h.tls), ("/healthz?x=1", false));
        assert_eq!(t, Target::new("127.0.0.1", 8080));
        let insecure = Options {
            insecure: true,
            ..Options::default()
        };
        let (c, t) = ok("https://[::1]", &insecure);
        let Check::Http(h) = c else { panic!("https") };
        assert!(h.tls && h.insecure_skip_verify && h.path == "/");
        assert_eq!(t, Target::new("::1", 443));
        assert!(parse("http://x?y", &Options::default()).is_ok());
    }

    #[test]
    fn tcp_udp_icmp() {
        let (c, t) = ok("tcp://127.0.0.1:5432", &Options::default());
        assert_eq!((c, t.port), (Check::Ping, 5432));
        let o = Options {
            send: Some(r"PING\n".into()),
            expect: Some("PONG".into()),
            ..Options::default()
        };
        let (c, _) = ok("udp://127.0.0.1:53", &o);
        let Check::Probe(p) = c else { panic!("probe") };
        assert_eq!((p.send.as_slice(), p.read_len), (&b"PING\n"[..], 4));
        let (c, t) = ok("icmp://198.18.0.1", &Options::default());
        assert_eq!(
            (c, t.host.as_str()),
            (Check::Icmp { count: 3 }, "198.18.0.1")
        );
    }

    #[test]
    fn usage_errors() {
        let none = Options::default();
        for bad in [
            "127.0.0.1:80",
            "ftp://h:1",
            "tcp://127.0.0.1",
            "tcp://h:0",
            "tcp://h:99999",
            "tcp://h:1/path",
            "http://::1:80",
            "http://[::1",
            "http://u@h",
            "http://",
            "udp://h:1",
        ] {
            assert!(parse(bad, &none).is_err(), "{bad}");
        }
        let insecure = Options {
            insecure: true,
            ..Options::default()
        };
        assert!(parse("http://h", &insecure).is_err());
        let send = Options {
            send: Some("x".into()),
            ..Options::default()
        };
        assert!(parse("tcp://h:1", &send).is_err());
    }
}

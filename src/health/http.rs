//! `http`: one request to the backend, status and body checked.
//!
//! The backend's address is dialled; `host` (if set) is sent as the `Host`
//! header and, with `tls`, as the TLS server name (SNI and the name the
//! certificate must carry). Without `host` the backend's host is used for
//! both (an IP literal is verified as an IP SAN). At most [`BODY_CAP`]
//! bytes of the body are read; `contains` is judged on those.

use super::{Cause, Outcome, Target};
use crate::config::HttpCheck;
use crate::http::{self, Dial, Limit, Request, Response};

/// Most body bytes read (then the connection is dropped).
pub const BODY_CAP: usize = 1 << 20;

pub async fn check(check: &HttpCheck, target: &Target) -> Outcome {
    let addr = match target.resolve().await {
        Ok(a) => a,
        Err(o) => return o,
    };
    let tls = match check.tls {
        true => match tls(check, target) {
            Ok(t) => Some(t),
            Err(o) => return o,
        },
        false => None,
    };
    let req = request(check, target);
    match http::send(
        &Dial::Tcp(addr),
        tls.as_ref(),
        &req,
        Limit::Truncate(BODY_CAP),
    )
    .await
    {
        Ok(resp) => judge(check, &resp),
        Err(e) => failed(&addr.to_string(), e),
    }
}

#[cfg(feature = "tls")]
fn tls(check: &HttpCheck, target: &Target) -> Result<http::Tls, Outcome> {
    let unavailable = |e: String| Outcome::fail(Cause::Unavailable, e);
    let config = http::shared_tls(check.insecure_skip_verify).map_err(unavailable)?;
    let name = crate::tls::server_name(&tls_name(check, target))
        .map_err(|e| Outcome::fail(Cause::Tls, format!("server name {e}")))?;
    Ok(http::Tls { config, name })
}

#[cfg(not(feature = "tls"))]
fn tls(_check: &HttpCheck, _target: &Target) -> Result<http::Tls, Outcome> {
    Err(Outcome::fail(
        Cause::Unavailable,
        "this build has no TLS support (feature \"tls\")",
    ))
}

/// The request: method, path, headers, and `Host` = `host` or the target.
pub fn request(check: &HttpCheck, target: &Target) -> Request {
    let host = match &check.host {
        Some(h) => h.clone(),
        None => http::url::host_header(&target.host, target.port, check.tls),
    };
    let mut req = Request::new(&check.method, &check.path, &host);
    for (name, value) in &check.headers {
        // `host` is the one Host header when set.
        if check.host.is_some() && name.eq_ignore_ascii_case("host") {
            continue;
        }
        req = req.header(name, value);
    }
    req
}

/// The TLS server name: `host` without a `:port`, or the target's host.
pub fn tls_name(check: &HttpCheck, target: &Target) -> String {
    let Some(host) = &check.host else {
        return target.host.clone();
    };
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name.to_string()
        }
        _ => host.clone(),
    }
}

/// Status within `expected_status` (empty = any), then `contains`.
pub fn judge(check: &HttpCheck, resp: &Response) -> Outcome {
    let status = resp.status;
    if !status_ok(&check.expected_status, status) {
        return Outcome::fail(
            Cause::BadStatus,
            format!("status {status} not in {}", ranges(&check.expected_status)),
        );
    }
    if let Some(want) = &check.contains
        && !contains(&resp.body, want.as_bytes())
    {
        let cut = if resp.truncated {
            " (read up to the 1 MiB cap)"
        } else {
            ""
        };
        return Outcome::fail(
            Cause::BodyMismatch,
            format!(
                "status {status}, body of {} bytes{cut} does not contain {want:?}",
                resp.body.len()
            ),
        );
    }
    Outcome::pass(format!("status {status}"))
}

pub fn status_ok(ranges: &[(u16, u16)], status: u16) -> bool {
    ranges.is_empty() || ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
}

fn ranges(ranges: &[(u16, u16)]) -> String {
    let items: Vec<String> = ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    items.join(", ")
}

/// Linear in the body (a window-by-window compare costs body x needle).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// A failed exchange, classified by the stage it failed at.
pub fn failed(addr: &str, e: http::Error) -> Outcome {
    match e {
        http::Error::Connect(e) => Outcome::from_io(&format!("connect {addr}"), &e),
        http::Error::Tls(e) => Outcome::fail(Cause::Tls, format!("tls handshake with {addr}: {e}")),
        http::Error::Io(e) => Outcome::from_io(&format!("http exchange with {addr}"), &e),
        http::Error::BadResponse(e) => Outcome::fail(Cause::BadResponse, format!("{addr}: {e}")),
        http::Error::TooLarge(n) => Outcome::fail(
            Cause::BadResponse,
            format!("{addr}: response larger than {n} bytes"),
        ),
        http::Error::Timeout => {
            Outcome::fail(Cause::Timeout, format!("{addr}: no response in time"))
        }
        http::Error::Request(e) => {
            Outcome::fail(Cause::Unavailable, format!("cannot send the request: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc() -> HttpCheck {
        HttpCheck {
            path: "/health?x=1".into(),
            method: "GET".into(),
            headers: Default::default(),
            host: None,
            tls: false,
            insecure_skip_verify: false,
            expected_status: vec![(200, 299), (302, 302)],
            contains: None,
        }
    }

    fn resp(status: u16, body: &str, truncated: bool) -> Response {
        Response {
            status,
            reason: String::new(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            truncated,
        }
    }

    #[test]
    fn status_ranges_are_inclusive_and_empty_means_any() {
        let c = hc();
        assert_eq!(judge(&c, &resp(200, "", false)).cause, Cause::Ok);
        assert_eq!(judge(&c, &resp(299, "", false)).cause, Cause::Ok);
        assert_eq!(judge(&c, &resp(302, "", false)).cause, Cause::Ok);
        let bad = judge(&c, &resp(301, "", false));
        assert_eq!(bad.cause, Cause::BadStatus);
        assert_eq!(bad.detail, "status 301 not in 200-299, 302");
        assert!(status_ok(&[], 599));
    }

    #[test]
    fn contains_is_a_byte_substring_of_what_was_read() {
        let mut c = hc();
        c.contains = Some("\"ok\"".into());
        assert_eq!(
            judge(&c, &resp(200, "{\"status\":\"ok\"}", false)).cause,
            Cause::Ok
        );
        let miss = judge(&c, &resp(200, "{\"status\":\"down\"}", true));
        assert_eq!(miss.cause, Cause::BodyMismatch);
        assert!(miss.detail.contains("1 MiB cap"), "{}", miss.detail);
        assert_eq!(
            judge(&c, &resp(500, "\"ok\"", false)).cause,
            Cause::BadStatus,
            "status first"
        );
        assert!(!contains(b"ab", b"abc"));
    }

    #[test]
    fn host_override_is_the_host_header_and_the_tls_name() {
        let t = Target::new("127.0.0.1", 8443);
        let mut c = hc();
        c.headers.insert("Host".into(), "from-headers".into());
        c.headers.insert("X-Probe".into(), "1".into());
        let text =
            |r: Request| String::from_utf8(r.encode().unwrap_or_default()).unwrap_or_default();
        let plain = text(request(&c, &t));
        assert!(
            plain.starts_with("GET /health?x=1 HTTP/1.1\r\nHost: from-headers\r\n"),
            "{plain}"
        );
        c.host = Some("www.example.com:8443".into());
        let over = text(request(&c, &t));
        assert!(over.contains("Host: www.example.com:8443\r\n"), "{over}");
        assert!(!over.contains("from-headers") && over.contains("X-Probe: 1\r\n"));
        assert_eq!(tls_name(&c, &t), "www.example.com");
        c.host = Some("[::1]:8443".into());
        assert_eq!(tls_name(&c, &t), "::1");
        c.host = Some("api.example.com".into());
        assert_eq!(tls_name(&c, &t), "api.example.com");
        c.host = None;
        assert_eq!(tls_name(&c, &t), "127.0.0.1");
    }

    #[test]
    fn default_host_header_is_the_target() {
        let mut c = hc();
        let v6 = Target::new("[::1]", 80);
        assert_eq!(request(&c, &v6).host, "[::1]");
        c.tls = true;
        assert_eq!(
            request(&c, &Target::new("10.1.1.1", 8443)).host,
            "10.1.1.1:8443"
        );
    }

    #[test]
    fn errors_map_to_causes() {
        use std::io::{Error, ErrorKind};
        let cases = [
            (
                http::Error::Connect(Error::from(ErrorKind::ConnectionRefused)),
                Cause::Refused,
            ),
            (
                http::Error::Connect(Error::from(ErrorKind::TimedOut)),
                Cause::Timeout,
            ),
            (
                http::Error::Connect(Error::from(ErrorKind::HostUnreachable)),
                Cause::Network,
            ),
            (
                http::Error::Tls(Error::other("bad certificate")),
                Cause::Tls,
            ),
            (
                http::Error::Io(Error::from(ErrorKind::ConnectionReset)),
                Cause::Network,
            ),
            (http::Error::BadResponse("junk".into()), Cause::BadResponse),
            (http::Error::Timeout, Cause::Timeout),
        ];
        for (e, want) in cases {
            assert_eq!(failed("1.2.3.4:80", e).cause, want);
        }
    }
}

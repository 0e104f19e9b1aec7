//! HTTP GETs for discovery (json, plaintext, consul, docker, config
//! sources) over the shared client in [`crate::http`]: a non-2xx status is
//! an error (gobetween parses any body), the body is capped at
//! [`MAX_BODY`] (a larger one fails this fetch only).

use std::path::PathBuf;

use crate::http::{self, Dial, Limit, Request, TlsConfig, Url};

/// Most bytes of a discovery response body.
pub const MAX_BODY: usize = 16 << 20;

/// Client certificate settings of an https source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (`lxd_accept_server_cert`).
    pub insecure: bool,
}

impl TlsFiles {
    /// The client config: system roots unless a CA is given.
    #[cfg(feature = "tls")]
    pub fn config(&self) -> Result<Option<TlsConfig>, String> {
        if *self == TlsFiles::default() {
            return Ok(None);
        }
        crate::tls::client_config(&crate::tls::ClientOptions {
            insecure: self.insecure,
            roots: self.ca.clone(),
            client_cert: self.cert.clone(),
            ..Default::default()
        })
        .map(Some)
    }

    #[cfg(not(feature = "tls"))]
    pub fn config(&self) -> Result<Option<TlsConfig>, String> {
        if *self == TlsFiles::default() {
            return Ok(None);
        }
        Err("TLS client certificates need a build with feature \"tls\"".into())
    }
}

/// GET `url` with extra `headers`; the body of a 2xx answer.
pub async fn get(url: &str, headers: &[(&str, String)], tls: &TlsFiles) -> Result<Vec<u8>, String> {
    let parsed = Url::parse(url)?;
    let mut req = Request::new("GET", &parsed.target, &parsed.host_header());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let config = tls.config()?;
    let resp = http::fetch(&parsed, &req, config, Limit::Fail(MAX_BODY))
        .await
        .map_err(|e| format!("GET {}: {e}", redact(url)))?;
    check(url, resp)
}

/// GET `target` through a unix socket or a TCP address (Docker, LXD).
pub async fn get_at(
    dial: &Dial,
    tls: Option<&http::Tls>,
    host: &str,
    target: &str,
) -> Result<Vec<u8>, String> {
    let req = Request::new("GET", target, host);
    let resp = http::send(dial, tls, &req, Limit::Fail(MAX_BODY))
        .await
        .map_err(|e| format!("GET {dial}{target}: {e}"))?;
    check(target, resp)
}

fn check(what: &str, resp: http::Response) -> Result<Vec<u8>, String> {
    if (200..300).contains(&resp.status) {
        return Ok(resp.body);
    }
    let mut e = format!(
        "GET {}: status {} {}",
        redact(what),
        resp.status,
        resp.reason
    );
    if let Some(to) = resp.header("location").filter(|_| resp.status / 100 == 3) {
        e.push_str(&format!(
            " (redirects are not followed; Location: {})",
            redact(to)
        ));
    }
    let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned();
    if !body.trim().is_empty() {
        e.push_str(&format!(": {}", body.trim()));
    }
    Err(e)
}

/// A URL without its query (which may carry tokens), for logs.
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, reason: &str, headers: &[(&str, &str)], body: &str) -> http::Response {
        http::Response {
            status,
            reason: reason.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn non_2xx_says_why() {
        let e = check(
            "http://h/x?token=1",
            resp(500, "Internal Server Error", &[], " oops\n"),
        );
        assert_eq!(
            e,
            Err("GET http://h/x: status 500 Internal Server Error: oops".into())
        );
        let r = resp(302, "Found", &[("Location", "https://h/y?k=s")], "");
        let e = check("http://h/x", r).unwrap_err();
        assert_eq!(
            e,
            "GET http://h/x: status 302 Found (redirects are not followed; Location: https://h/y)"
        );
        assert_eq!(check("u", resp(204, "No Content", &[], "")), Ok(Vec::new()));
    }
}

//! HTTP GETs for discovery (json, plaintext, consul, docker, config
//! sources) over the shared client in [`crate::http`]: a non-2xx status is
//! an error (gobetween parses any body), the body is capped at
//! [`MAX_BODY`] (a larger one fails this fetch only).

use std::path::PathBuf;

use crate::http::url::percent_decode;
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

/// GET `url` with extra `headers`; the body of a 2xx answer. User info
/// in the URL (`http://user:pass@host/`) is sent as basic auth, as Go's
/// client (gobetween) does, unless `headers` has an `Authorization`.
pub async fn get(url: &str, headers: &[(&str, String)], tls: &TlsFiles) -> Result<Vec<u8>, String> {
    let (plain, user) = user_info(url);
    let parsed = Url::parse(&plain)?;
    let mut req = Request::new("GET", &parsed.target, &parsed.host_header());
    let has_auth = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if let Some((name, password)) = user.filter(|_| !has_auth) {
        let token = http::base64::encode(format!("{name}:{password}").as_bytes());
        req = req.header("Authorization", &format!("Basic {token}"));
    }
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
    // An excerpt on one line (an error page is often HTML over many).
    let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if !body.is_empty() {
        e.push_str(&format!(": {body}"));
    }
    Err(e)
}

/// A URL without its user info and its query (which may carry
/// passwords and tokens), for logs.
pub fn redact(url: &str) -> String {
    crate::config::secrets::url_for_logs(url)
}

/// `url` without `user:password@`, and the (percent-decoded) user and
/// password if it had them.
pub fn user_info(url: &str) -> (String, Option<(String, String)>) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let Some((info, _)) = url[start..end].rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (name, password) = info.split_once(':').unwrap_or((info, ""));
    let plain = format!("{}{}", &url[..start], &url[start + info.len() + 1..]);
    (
        plain,
        Some((percent_decode(name), percent_decode(password))),
    )
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
    fn user_info_is_split_off_and_redacted() {
        let (plain, user) = user_info("http://lb:p%40ss@h:80/x?k=1");
        assert_eq!(plain, "http://h:80/x?k=1");
        assert_eq!(user, Some(("lb".into(), "p@ss".into())));
        let (plain, user) = user_info("https://token@h/x");
        assert_eq!(
            (plain.as_str(), user),
            ("https://h/x", Some(("token".into(), String::new())))
        );
        assert_eq!(
            user_info("http://h/a@b").1,
            None,
            "an @ in the path is not user info"
        );
        assert_eq!(user_info("http://h:1").0, "http://h:1");
        assert_eq!(redact("http://lb:secret@h/x?token=t"), "http://h/x");
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
        let page = "<html>\n  <body>\r\n    <h1>Not Found</h1>\n</html>\n";
        let e = check("http://h/x", resp(404, "Not Found", &[], page)).unwrap_err();
        assert_eq!(
            e,
            "GET http://h/x: status 404 Not Found: <html> <body> <h1>Not Found</h1> </html>"
        );
    }
}

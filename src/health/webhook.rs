//! `webhook`: ask an HTTP endpoint about the target; 2xx = healthy.
//!
//! `POST` sends `{"ip": HOST, "port": PORT}` as JSON; `GET` appends
//! `ip=HOST&port=PORT` to the URL's query. Any 2xx status passes; the body
//! is not looked at (at most [`BODY_CAP`] bytes of it are read).

use super::{Cause, Outcome, Target};
use crate::config::WebhookMethod;
use crate::config::secrets::url_for_logs;
use crate::http::{self, Limit, Request, Url};

/// Most body bytes read from the webhook.
pub const BODY_CAP: usize = 64 * 1024;

pub async fn check(url: &str, method: WebhookMethod, target: &Target) -> Outcome {
    let url = match Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Outcome::fail(Cause::Unavailable, e),
    };
    let req = request(&url, method, target);
    match http::fetch(&url, &req, None, Limit::Truncate(BODY_CAP)).await {
        Ok(resp) => judge(resp.status),
        // The query may carry a token: reports and logs name the URL without it.
        Err(e) => super::http::failed(&url_for_logs(&url.to_string()), e),
    }
}

/// The question about `target`, for `url`.
pub fn request(url: &Url, method: WebhookMethod, target: &Target) -> Request {
    match method {
        WebhookMethod::Post => {
            let body = serde_json::json!({ "ip": target.host, "port": target.port });
            Request::new("POST", &url.target, &url.host_header())
                .header("Content-Type", "application/json")
                .header("Accept", "*/*")
                .body(body.to_string())
        }
        WebhookMethod::Get => {
            let sep = if url.target.contains('?') { '&' } else { '?' };
            let query = format!("ip={}&port={}", escape(&target.host), target.port);
            let path = format!("{}{sep}{query}", url.target);
            Request::new("GET", &path, &url.host_header())
        }
    }
}

pub fn judge(status: u16) -> Outcome {
    if (200..300).contains(&status) {
        Outcome::pass(format!("webhook status {status}"))
    } else {
        Outcome::fail(Cause::BadStatus, format!("webhook status {status}"))
    }
}

/// Percent-encode all but unreserved characters and `:` (IPv6 literals).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn post_sends_ip_and_port_as_json() {
        let req = request(
            &url("http://127.0.0.1:9000/hook"),
            WebhookMethod::Post,
            &Target::new("[::1]", 8080),
        );
        assert_eq!(
            (req.method.as_str(), req.target.as_str(), req.host.as_str()),
            ("POST", "/hook", "127.0.0.1:9000")
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        assert_eq!(body, serde_json::json!({"ip": "::1", "port": 8080}));
        assert!(
            req.headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
    }

    #[test]
    fn get_appends_the_query() {
        let t = Target::new("10.0.0.7", 80);
        let req = request(&url("http://h/check"), WebhookMethod::Get, &t);
        assert_eq!(req.target, "/check?ip=10.0.0.7&port=80");
        assert!(req.body.is_empty());
        let req = request(&url("http://h/check?token=a"), WebhookMethod::Get, &t);
        assert_eq!(req.target, "/check?token=a&ip=10.0.0.7&port=80");
        let odd = request(
            &url("http://h"),
            WebhookMethod::Get,
            &Target::new("a b&c", 1),
        );
        assert_eq!(odd.target, "/?ip=a%20b%26c&port=1");
    }

    #[tokio::test]
    async fn a_failure_does_not_show_the_query() {
        // Port 1 on loopback: refused at once.
        let t = Target::new("127.0.0.1", 80);
        let o = check(
            "http://127.0.0.1:1/hook?token=SECRET",
            WebhookMethod::Post,
            &t,
        )
        .await;
        assert_eq!(o.verdict, super::super::Verdict::Fail);
        assert!(!o.detail.contains("SECRET"), "{}", o.detail);
        assert!(o.detail.contains("127.0.0.1:1/hook"), "{}", o.detail);
    }

    #[test]
    fn only_2xx_passes() {
        assert_eq!(judge(200).cause, Cause::Ok);
        assert_eq!(judge(204).cause, Cause::Ok);
        for bad in [199, 300, 404, 503] {
            assert_eq!(judge(bad).cause, Cause::BadStatus, "{bad}");
        }
    }
}

//! `consul`: GET `/v1/health/service/NAME` (with `tag`, `passing`, `dc`)
//! from `consul_host`, over https when `consul_tls_enabled`; ACL token in
//! `X-Consul-Token`, basic auth when a username is set. Each entry gives a
//! backend: host = the service address, else the node address; port = the
//! service port; sni = the value of a `sni=NAME` tag.

use serde_json::Value;

use super::web::{TlsFiles, get};
use super::{BackendSpec, Listing};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consul {
    /// `http://host:port` or `https://host:port`.
    pub base: String,
    pub service: String,
    pub tag: Option<String>,
    pub passing_only: bool,
    pub datacenter: Option<String>,
    pub token: Option<String>,
    pub auth: Option<(String, String)>,
    pub tls: TlsFiles,
}

impl Consul {
    /// The health query URL.
    pub fn url(&self) -> String {
        let mut query = Vec::new();
        if let Some(tag) = &self.tag {
            query.push(format!("tag={}", escape(tag)));
        }
        if self.passing_only {
            query.push("passing=1".to_string());
        }
        if let Some(dc) = &self.datacenter {
            query.push(format!("dc={}", escape(dc)));
        }
        let mut url = format!("{}/v1/health/service/{}", self.base, escape(&self.service));
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    pub async fn fetch(&self) -> Result<Listing, String> {
        let body = get(&self.url(), &headers(&self.token, &self.auth), &self.tls).await?;
        parse(&body)
    }
}

/// Split `consul_host` into (https, `host:port`). As with Consul's Go
/// client (which gobetween uses), the host may start with `http://` or
/// `https://`; without a scheme, `tls` (`consul_tls_enabled`, `-s https`)
/// decides. `http://` while TLS is asked for is an error.
pub fn split_host(host: &str, tls: bool) -> Result<(bool, &str), String> {
    let shown = crate::config::secrets::url_for_logs(host);
    match host.split_once("://") {
        None => Ok((tls, host)),
        Some(("https", rest)) => Ok((true, rest)),
        Some(("http", rest)) if !tls => Ok((false, rest)),
        Some(("http", _)) => Err(format!(
            "\"{shown}\": http:// but TLS is enabled (write https:// or no scheme)"
        )),
        Some((scheme, _)) => Err(format!(
            "\"{shown}\": unknown scheme {scheme}:// (use host:port, http:// or https://)"
        )),
    }
}

/// Consul's request headers: ACL token and basic auth.
pub fn headers(
    token: &Option<String>,
    auth: &Option<(String, String)>,
) -> Vec<(&'static str, String)> {
    let mut h = vec![("Accept", "application/json".to_string())];
    if let Some(t) = token {
        h.push(("X-Consul-Token", t.clone()));
    }
    if let Some((user, pass)) = auth {
        h.push((
            "Authorization",
            format!(
                "Basic {}",
                crate::http::base64::encode(format!("{user}:{pass}").as_bytes())
            ),
        ));
    }
    h
}

/// Parse a `/v1/health/service` answer (pure).
pub fn parse(body: &[u8]) -> Result<Listing, String> {
    let mut listing = Listing::default();
    let not_array = "expected a JSON array of health entries";
    super::json::each_element(body, not_array, |i, entry| {
        entry_spec(&mut listing, i, &entry);
        Ok(())
    })?;
    Ok(listing)
}

/// The backend of one health entry, or a warning.
fn entry_spec(listing: &mut Listing, i: usize, entry: &Value) {
    let service = &entry["Service"];
    let address = service["Address"]
        .as_str()
        .filter(|a| !a.is_empty())
        .or_else(|| entry["Node"]["Address"].as_str())
        .filter(|a| !a.is_empty());
    let port = service["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0);
    let (Some(address), Some(port)) = (address, port) else {
        listing.warn(|| format!("entry {i}: no address or port; skipped"));
        return;
    };
    let sni = service["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix("sni="))
        .unwrap_or_default();
    listing.specs.push(BackendSpec::new(address, port, sni));
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_has_the_filters() {
        let c = Consul {
            base: "http://127.0.0.1:8500".into(),
            service: "web app".into(),
            tag: Some("v1".into()),
            passing_only: true,
            datacenter: Some("dc1".into()),
            token: None,
            auth: None,
            tls: TlsFiles::default(),
        };
        assert_eq!(
            c.url(),
            "http://127.0.0.1:8500/v1/health/service/web%20app?tag=v1&passing=1&dc=dc1"
        );
    }

    #[test]
    fn parses_health_entries() {
        let body = br#"[
          {"Node":{"Node":"n1","Address":"127.0.0.1"},"Service":{"ID":"a","Service":"web","Tags":["x","sni=a.test"],"Address":"","Port":8001},"Checks":[]},
          {"Node":{"Node":"n2","Address":"127.0.0.2"},"Service":{"ID":"b","Service":"web","Tags":null,"Address":"::1","Port":8002},"Checks":[]},
          {"Node":{"Node":"n3","Address":""},"Service":{"ID":"c","Service":"web","Address":"","Port":8003},"Checks":[]}
        ]"#;
        let l = parse(body).unwrap();
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["127.0.0.1:8001", "[::1]:8002"]);
        assert_eq!(l.specs[0].sni, "a.test");
        assert_eq!(l.warnings.len(), 1);
        assert!(parse(b"{}").is_err());
        assert!(parse(b"[").is_err());
    }

    #[test]
    fn host_with_or_without_scheme() {
        assert_eq!(split_host("c:8500", false), Ok((false, "c:8500")));
        assert_eq!(split_host("c:8500", true), Ok((true, "c:8500")));
        assert_eq!(split_host("http://c:8500", false), Ok((false, "c:8500")));
        assert_eq!(split_host("https://c:8500", false), Ok((true, "c:8500")));
        assert!(split_host("http://c:8500", true).is_err());
        assert!(split_host("unix:///run/consul.sock", false).is_err());
    }

    #[test]
    fn base64_and_headers() {
        assert_eq!(crate::http::base64::encode(b""), "");
        assert_eq!(crate::http::base64::encode(b"f"), "Zg==");
        assert_eq!(crate::http::base64::encode(b"fo"), "Zm8=");
        assert_eq!(crate::http::base64::encode(b"foo"), "Zm9v");
        assert_eq!(crate::http::base64::encode(b"user:pass"), "dXNlcjpwYXNz");
        let h = headers(&Some("tok".into()), &Some(("user".into(), "pass".into())));
        assert!(h.contains(&("X-Consul-Token", "tok".to_string())));
        assert!(h.contains(&("Authorization", "Basic dXNlcjpwYXNz".to_string())));
    }
}

//! Config sources other than a file: `from-url URL` (one GET; a non-2xx
//! status is an error, unlike gobetween) and `from-consul HOST:PORT -k KEY
//! -s http|https` (Consul's `/v1/kv/KEY?raw`, which returns the stored
//! value as is). Read at start and again on SIGHUP.

use std::time::Duration;

use super::consul::escape;
use super::web::{TlsFiles, get, redact};

/// How long one config fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Url(String),
    Consul {
        host: String,
        key: String,
        https: bool,
    },
}

impl Remote {
    /// The URL fetched.
    pub fn url(&self) -> String {
        match self {
            Remote::Url(u) => u.clone(),
            Remote::Consul { host, key, https } => {
                let scheme = if *https { "https" } else { "http" };
                let key: Vec<String> = key.split('/').map(escape).collect();
                format!("{scheme}://{host}/v1/kv/{}?raw", key.join("/"))
            }
        }
    }

    /// Fetch the config text.
    pub async fn fetch(&self) -> Result<String, String> {
        let url = self.url();
        let shown = redact(&url);
        let body = tokio::time::timeout(FETCH_TIMEOUT, get(&url, &[], &TlsFiles::default()))
            .await
            .map_err(|_| format!("{shown}: no answer within {FETCH_TIMEOUT:?}"))??;
        config_text(&shown, body)
    }

    /// Fetch from outside any runtime (at startup).
    pub fn fetch_blocking(&self) -> Result<String, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?
            .block_on(self.fetch())
    }
}

/// The fetched body as config text. An empty body is an error: more often
/// a key that was emptied or a wrong URL than a config meant to stop every
/// server (on SIGHUP the running config stays; a config without servers
/// can still be served as a comment line).
fn config_text(shown: &str, body: Vec<u8>) -> Result<String, String> {
    let text = String::from_utf8(body).map_err(|_| format!("{shown}: the config is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(format!("{shown}: the config is empty"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_is_not_a_config() {
        assert_eq!(
            config_text("u", b" \n".to_vec()),
            Err("u: the config is empty".into())
        );
        assert_eq!(
            config_text("u", b"# none\n".to_vec()),
            Ok("# none\n".into())
        );
        assert!(config_text("u", vec![0xff]).is_err());
    }

    #[test]
    fn consul_kv_url() {
        let r = Remote::Consul {
            host: "127.0.0.1:8500".into(),
            key: "lb/betwixt conf".into(),
            https: true,
        };
        assert_eq!(
            r.url(),
            "https://127.0.0.1:8500/v1/kv/lb/betwixt%20conf?raw"
        );
    }
}

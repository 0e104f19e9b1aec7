//! A small HTTP/1.1 client for health checks and discovery: one request per
//! connection (`Connection: close`), over TCP or a unix socket, optionally
//! over TLS (feature `tls`), with a cap on the body.
//!
//! - [`url`]: `http://host:port/path?q` / `https://[v6]/...` parsing (pure).
//! - [`wire`]: request encoding, response heads (httparse), body framing and
//!   chunked decoding (pure, bounded).
//! - [`client`]: the I/O ([`send`]).
//!
//! Usage:
//!
//! ```no_run
//! # async fn demo() -> Result<(), betwixt::http::Error> {
//! use betwixt::http::{self, Dial, Limit, Request, Url};
//! // A URL (discovery): resolve, TLS for https with the shared system-roots
//! // config, fail on bodies over 1 MiB.
//! let url = Url::parse("http://127.0.0.1:8500/v1/catalog").map_err(http::Error::Request)?;
//! let req = Request::new("GET", &url.target, &url.host_header()).header("Accept", "application/json");
//! let resp = http::fetch(&url, &req, None, Limit::Fail(1 << 20)).await?;
//! println!("{} {}", resp.status, String::from_utf8_lossy(&resp.body));
//!
//! // A fixed address with another Host header (health checks), reading at
//! // most 1 MiB of the body and marking it truncated beyond that:
//! let dial = Dial::Tcp("127.0.0.1:8080".parse().expect("addr"));
//! let req = Request::new("GET", "/health", "www.example.com");
//! let resp = http::send(&dial, None, &req, Limit::Truncate(1 << 20)).await?;
//!
//! // A unix socket (Docker): the Host header is required but unused.
//! let dial = Dial::Unix("/var/run/docker.sock".into());
//! let resp = http::send(&dial, None, &Request::new("GET", "/containers/json", "docker"), Limit::Fail(8 << 20)).await?;
//! # Ok(()) }
//! ```
//!
//! With TLS pass `Some(&Tls { config, name })`: `config` from
//! [`crate::tls::client_config`] (custom roots, client certificates) or
//! [`shared_tls`] (system roots / insecure, built once per process), `name`
//! from [`crate::tls::server_name`]. [`send`] has no deadline of its own:
//! wrap it in [`within`] or `tokio::time::timeout`.

pub mod base64;
pub mod client;
pub mod url;
pub mod wire;

#[cfg(test)]
mod fuzz_tests;

use std::future::Future;
use std::time::Duration;

pub use client::{Dial, Error, Limit, Response, Tls, send};
pub use url::Url;
pub use wire::Request;

/// A TLS client configuration (an uninhabited type without feature `tls`).
#[cfg(feature = "tls")]
pub type TlsConfig = std::sync::Arc<rustls::ClientConfig>;
#[cfg(not(feature = "tls"))]
pub type TlsConfig = Tls;

/// Send `req` to `url`: resolve its host (an IP literal as it is, a name
/// through the process-wide cache, [`crate::resolve`]; the first address),
/// dial, and for `https` run TLS with `config` (or the shared system-roots
/// config when `None`), sending the URL's host as SNI. `req` carries its
/// own target and Host header. A failed name lookup is an
/// [`Error::Connect`] naming only the host (`resolve HOST: ...`), never the
/// URL's query.
pub async fn fetch(
    url: &Url,
    req: &Request,
    config: Option<TlsConfig>,
    limit: Limit,
) -> Result<Response, Error> {
    let addr = crate::resolve::first_addr(&url.host, url.port)
        .await
        .map_err(Error::Connect)?;
    let tls = if url.https {
        Some(url_tls(url, config)?)
    } else {
        None
    };
    send(&Dial::Tcp(addr), tls.as_ref(), req, limit).await
}

#[cfg(feature = "tls")]
fn url_tls(url: &Url, config: Option<TlsConfig>) -> Result<Tls, Error> {
    let config = match config {
        Some(c) => c,
        None => shared_tls(false).map_err(Error::Request)?,
    };
    let name = crate::tls::server_name(&url.host).map_err(Error::Request)?;
    Ok(Tls { config, name })
}

#[cfg(not(feature = "tls"))]
fn url_tls(url: &Url, _config: Option<TlsConfig>) -> Result<Tls, Error> {
    Err(Error::Request(format!(
        "{url}: https needs a build with TLS support (feature \"tls\")"
    )))
}

/// The process-wide client config verifying against the system roots
/// (`insecure = false`), or accepting any certificate (`true`). Built on
/// first use: reading the system store on every check would cost more than
/// the check.
#[cfg(feature = "tls")]
pub fn shared_tls(insecure: bool) -> Result<TlsConfig, String> {
    use std::sync::OnceLock;
    static VERIFY: OnceLock<Result<TlsConfig, String>> = OnceLock::new();
    static INSECURE: OnceLock<Result<TlsConfig, String>> = OnceLock::new();
    let cell = if insecure { &INSECURE } else { &VERIFY };
    cell.get_or_init(|| {
        crate::tls::client_config(&crate::tls::ClientOptions {
            insecure,
            ..Default::default()
        })
    })
    .clone()
}

/// Run `f` for at most `limit` (`None` = no bound): [`Error::Timeout`] after.
pub async fn within<T>(
    limit: Option<Duration>,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match limit {
        Some(t) => tokio::time::timeout(t, f)
            .await
            .unwrap_or(Err(Error::Timeout)),
        None => f.await,
    }
}

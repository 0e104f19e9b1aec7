//! TLS termination (`protocol = "tls"`) and origination (`[backends_tls]`).
//!
//! [`Edge`] holds the rustls configurations of one server, built from its
//! config with the certificate files read at that moment; the daemon builds
//! a new one on every SIGHUP (so changed certificates are picked up) and
//! swaps it in. A connection keeps the configuration it started with, so
//! open connections are never dropped by a reload.
//!
//! Life of a connection here (after accept, access rules, the server slot
//! and the optional SNI peek in [`super::tcp`]): TLS handshake with the
//! client -> elect -> connect, PROXY header, TLS handshake with the backend
//! (a failed handshake counts as a failed connect and the next backend is
//! tried) -> [`StreamRelay`].

use std::sync::{Arc, RwLock};

use crate::config::Server;

/// The TLS configurations a server needs; empty for plain tcp.
#[derive(Default)]
pub struct Contexts {
    #[cfg(feature = "tls")]
    pub acceptor: Option<Arc<rustls::ServerConfig>>,
    #[cfg(feature = "tls")]
    pub connector: Option<Arc<rustls::ClientConfig>>,
}

impl Contexts {
    /// Build from a server config, reading certificate files now.
    #[cfg(feature = "tls")]
    pub fn build(cfg: &Server) -> Result<Self, String> {
        use crate::tls::{ClientOptions, ServerOptions, client_config, server_config};
        let acceptor = match (&cfg.protocol, &cfg.tls) {
            (crate::config::Protocol::Tls, Some(t)) => {
                let Some(pair) = &t.cert else {
                    return Err("tls: cert_path and key_path are required".into());
                };
                let opts = ServerOptions {
                    cert: pair.cert_path.clone(),
                    key: pair.key_path.clone(),
                    min_version: t.min_version.clone(),
                    max_version: t.max_version.clone(),
                    ciphers: t.ciphers.clone(),
                    session_tickets: t.session_tickets,
                };
                Some(server_config(&opts).map_err(|e| format!("tls: {e}"))?)
            }
            _ => None,
        };
        let connector = match &cfg.backends_tls {
            Some(b) => {
                let opts = ClientOptions {
                    insecure: b.ignore_verify,
                    roots: b.root_ca_cert_path.clone(),
                    client_cert: b
                        .client_cert
                        .as_ref()
                        .map(|c| (c.cert_path.clone(), c.key_path.clone())),
                    min_version: b.min_version.clone(),
                    max_version: b.max_version.clone(),
                    ciphers: b.ciphers.clone(),
                    session_tickets: b.session_tickets,
                };
                Some(client_config(&opts).map_err(|e| format!("backends_tls: {e}"))?)
            }
            None => None,
        };
        Ok(Self {
            acceptor,
            connector,
        })
    }

    #[cfg(not(feature = "tls"))]
    pub fn build(cfg: &Server) -> Result<Self, String> {
        if cfg.protocol == crate::config::Protocol::Tls || cfg.backends_tls.is_some() {
            return Err("TLS is not in this build (feature \"tls\")".into());
        }
        Ok(Self::default())
    }

    /// Whether connections need the stream relay instead of splice.
    pub fn active(&self) -> bool {
        #[cfg(feature = "tls")]
        {
            self.acceptor.is_some() || self.connector.is_some()
        }
        #[cfg(not(feature = "tls"))]
        {
            false
        }
    }
}

/// The current [`Contexts`] of a server, swapped whole on reload.
#[derive(Default)]
pub struct Edge(RwLock<Arc<Contexts>>);

impl Edge {
    pub fn new(contexts: Contexts) -> Self {
        Self(RwLock::new(Arc::new(contexts)))
    }

    pub fn get(&self) -> Arc<Contexts> {
        match self.0.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    pub fn set(&self, contexts: Contexts) {
        let c = Arc::new(contexts);
        match self.0.write() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }
}

#[cfg(feature = "tls")]
pub use imp::handle;

#[cfg(feature = "tls")]
#[path = "tls_conn.rs"]
mod imp;

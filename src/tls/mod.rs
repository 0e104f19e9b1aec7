//! TLS with rustls (feature `tls`): PEM loading, client configurations
//! shared by health checks, discovery and TLS to backends, and server
//! configurations for `protocol = "tls"` listeners.
//!
//! Versions and ciphers use gobetween's names (`tls1.2`, Go cipher suite
//! names), already validated by the config; rustls implements TLS 1.2 and 1.3
//! only, so a lower `min_version` means 1.2.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How a client verifies and identifies itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Skip certificate verification (handshake signatures are still checked).
    pub insecure: bool,
    /// Trust only these CAs (PEM); `None` = the system store.
    pub roots: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// gobetween version names (`tls1.2`, `tls1.3`); `None` = rustls' range.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Go cipher suite names; empty = rustls' defaults.
    pub ciphers: Vec<String>,
    /// Resume sessions (gobetween default: off).
    pub session_tickets: bool,
}

/// What a TLS listener needs (from `[servers.NAME.tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub ciphers: Vec<String>,
    pub session_tickets: bool,
}

/// The process-wide crypto provider (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let encrypted = std::fs::read(path).is_ok_and(|text| {
            let has = |s: &[u8]| text.windows(s.len()).any(|w| w == s);
            has(b"ENCRYPTED PRIVATE KEY") || has(b"Proc-Type: 4,ENCRYPTED")
        });
        if encrypted {
            format!(
                "{}: the private key is encrypted, which is not supported (decrypt it: openssl pkey -in KEY -out PLAIN.key)",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })
}

/// Why a certificate and its key could not be used together, naming the files.
pub fn pair_error(cert: &Path, key: &Path, e: rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
            "{}: the private key does not belong to the certificate in {}",
            key.display(),
            cert.display()
        ),
        e => format!("{}: {e}", key.display()),
    }
}

/// The provider restricted to the named suites (all when empty). As in Go
/// (gobetween), a list that names no TLS 1.3 suite restricts TLS 1.2 only:
/// TLS 1.3 keeps all its suites instead of being switched off.
fn provider_with(ciphers: &[String]) -> Result<Arc<CryptoProvider>, String> {
    let mut p = ring::default_provider();
    if !ciphers.is_empty() {
        let mut chosen = Vec::new();
        for name in ciphers {
            let code = crate::config::cipher_code(name)
                .ok_or_else(|| format!("cipher {name:?} is not supported"))?;
            if let Some(s) = p
                .cipher_suites
                .iter()
                .find(|s| u16::from(s.suite()) == code)
                && !chosen.contains(s)
            {
                chosen.push(*s);
            }
        }
        let tls13 = |s: &rustls::SupportedCipherSuite| s.tls13().is_some();
        if !chosen.iter().any(tls13) {
            chosen.extend(p.cipher_suites.iter().filter(|s| tls13(s)));
        }
        p.cipher_suites = chosen;
    }
    Ok(Arc::new(p))
}

/// The protocol versions between `min` and `max` (gobetween names).
pub fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |v: Option<&str>, default: u8| match v {
        None => Ok(default),
        Some("tls1" | "tls1.1" | "tls1.2") => Ok(2),
        Some("tls1.3") => Ok(3),
        Some(other) => Err(format!("TLS version {other:?} is not supported")),
    };
    let (lo, hi) = (rank(min, 2)?, rank(max, 3)?);
    if matches!(max, Some("tls1" | "tls1.1")) || lo > hi {
        return Err("no TLS version rustls implements is in min_version..max_version".into());
    }
    let all: [(u8, &'static SupportedProtocolVersion); 2] =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)];
    Ok(all
        .iter()
        .filter(|(r, _)| (lo..=hi).contains(r))
        .map(|(_, v)| *v)
        .collect())
}

/// The only way choosing versions fails: no suite of `ciphers` is usable
/// with them (say it in config terms, not rustls').
fn no_suite(e: rustls::Error) -> String {
    format!(
        "no cipher in ciphers can be used with the TLS versions min_version..max_version allow ({e})"
    )
}

/// A server configuration: certificate chain and key read now.
pub fn server_config(opts: &ServerOptions) -> Result<Arc<ServerConfig>, String> {
    let versions = versions(opts.min_version.as_deref(), opts.max_version.as_deref())?;
    let mut config = ServerConfig::builder_with_provider(provider_with(&opts.ciphers)?)
        .with_protocol_versions(&versions)
        .map_err(no_suite)?
        .with_no_client_auth()
        .with_single_cert(load_certs(&opts.cert)?, load_key(&opts.key)?)
        .map_err(|e| pair_error(&opts.cert, &opts.key, e))?;
    if opts.session_tickets {
        config.ticketer = ring::Ticketer::new().map_err(|e| format!("tls: {e}"))?;
    } else {
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    }
    Ok(Arc::new(config))
}

/// A client configuration; errors name the file or setting at fault.
pub fn client_config(opts: &ClientOptions) -> Result<Arc<ClientConfig>, String> {
    let versions = versions(opts.min_version.as_deref(), opts.max_version.as_deref())?;
    let builder = ClientConfig::builder_with_provider(provider_with(&opts.ciphers)?)
        .with_protocol_versions(&versions)
        .map_err(no_suite)?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider().signature_verification_algorithms,
            )))
    } else {
        builder.with_root_certificates(roots(opts.roots.as_deref())?)
    };
    let mut config = match &opts.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("client certificate: {}", pair_error(cert, key, e)))?,
        None => builder.with_no_client_auth(),
    };
    if !opts.session_tickets {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

fn roots(path: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match path {
        Some(p) => {
            for cert in load_certs(p)? {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let _ = store.add_parsable_certificates(found.certs);
        }
    }
    Ok(store)
}

/// The name to verify and send as SNI: a DNS name or an IP literal.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))
}

/// Run a client handshake over `stream`, sending `name` as SNI.
pub async fn connect<S>(
    stream: S,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    TlsConnector::from(config).connect(name, stream).await
}

/// Accepts any certificate (`insecure_skip_verify`, `ignore_verify`), but
/// still checks that the peer owns the key it presented.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_clamp_to_what_rustls_implements() {
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert_eq!(versions(Some("tls1"), Some("tls1.2")).unwrap().len(), 1);
        assert_eq!(
            versions(Some("tls1.3"), None).unwrap()[0].version,
            rustls::ProtocolVersion::TLSv1_3
        );
        assert!(versions(None, Some("tls1.1")).is_err());
        assert!(versions(Some("ssl3"), None).is_err());
    }

    #[test]
    fn ciphers_map_go_names_to_rustls_suites() {
        let p = provider_with(&["TLS_AES_256_GCM_SHA384".into()]).unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(
            p.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let p = provider_with(&[
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into(),
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256".into(),
        ])
        .unwrap();
        // One TLS 1.2 suite; naming no TLS 1.3 suite keeps all three (Go).
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_none())
            .collect();
        assert_eq!(tls12.len(), 1);
        assert_eq!(p.cipher_suites.len(), 4);
        assert!(provider_with(&["TLS_RSA_WITH_RC4_128_SHA".into()]).is_err());
        assert_eq!(provider_with(&[]).unwrap().cipher_suites.len(), 9);
    }
}

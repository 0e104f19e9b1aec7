//! Runtime configuration: the validated form of a config file.
//!
//! Values of these types are only built by [`super::validate`], so code that
//! receives them may rely on every invariant written on a field. Durations are
//! `Option<Duration>` where gobetween's `"0"` means "no timeout" (`None`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::balance::BalanceKind;
use crate::discovery::BackendSpec;
use crate::proxy::access::AccessList;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub logging: Logging,
    pub api: Api,
    pub metrics: Metrics,
    /// Servers by name, in name order (stable for diffs and dumps).
    pub servers: BTreeMap<String, Server>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub level: Level,
    pub output: LogOutput,
    pub format: LogFormat,
}

/// A secret string: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub login: String,
    pub password: Secret,
}

/// A PEM certificate chain and private key, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub enabled: bool,
    /// Default 127.0.0.1:8888 (gobetween has no default; it must never be public by accident).
    pub bind: SocketAddr,
    pub cors: bool,
    pub basic_auth: Option<BasicAuth>,
    pub tls: Option<CertPair>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub enabled: bool,
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Tls,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

/// One `[servers.NAME]` section with `[defaults]` already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub bind: SocketAddr,
    pub protocol: Protocol,
    pub balance: BalanceKind,
    /// Concurrent client connections; 0 = unlimited.
    pub max_connections: u32,
    /// See docs/CONFIG.md "Timeouts": a side is idle when no byte crossed its socket
    /// in either direction. `None` = no timeout.
    pub client_idle_timeout: Option<Duration>,
    pub backend_idle_timeout: Option<Duration>,
    /// Backend connect timeout; `None` = the OS default.
    pub backend_connection_timeout: Option<Duration>,
    /// How many other backends to try when connecting fails (default 1).
    pub backend_connection_retries: u32,
    /// How long open connections may run after SIGTERM or removal (default 30s).
    pub drain_timeout: Duration,
    pub access: Option<AccessList>,
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    pub discovery: Discovery,
    pub healthcheck: Healthcheck,
    pub sni: Option<Sni>,
    pub tls: Option<Tls>,
    pub backends_tls: Option<BackendsTls>,
    pub udp: Option<Udp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    KeepLast,
    SetEmpty,
}

/// `[servers.NAME.discovery]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub kind: DiscoveryKind,
    /// `None` = fetch once (gobetween's "0").
    pub interval: Option<Duration>,
    /// The kind's documented default when unset.
    pub timeout: Duration,
    pub failpolicy: FailPolicy,
}

/// Discovery kinds with their kind-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryKind {
    Static {
        backends: Vec<BackendSpec>,
    },
    /// Kinds implemented by later work; their keys are validated already.
    Other {
        kind: String,
        params: BTreeMap<String, String>,
    },
}

/// `[servers.NAME.healthcheck]`. Only the keys shared by every kind are typed
/// here; kind-specific settings are validated and kept in `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    pub kind: String,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub port: Option<u16>,
    pub fails: u32,
    pub passes: u32,
    pub initial_healthy: bool,
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostnameMatching {
    Exact,
    Regexp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnexpectedHostname {
    Default,
    Reject,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sni {
    pub read_timeout: Duration,
    pub hostname_matching_strategy: HostnameMatching,
    pub unexpected_hostname_strategy: UnexpectedHostname,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: Option<CertPair>,
    pub acme_hosts: Vec<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub ciphers: Vec<String>,
    pub session_tickets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendsTls {
    pub ignore_verify: bool,
    pub root_ca_cert_path: Option<std::path::PathBuf>,
    pub client_cert: Option<CertPair>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub ciphers: Vec<String>,
    pub session_tickets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    pub max_requests: u64,
    pub max_responses: u64,
    pub transparent: bool,
    pub max_sessions: u32,
}

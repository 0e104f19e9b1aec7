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
    /// `[defaults] max_exec_checks`: `exec`/`script` health checks that may
    /// run at once in the whole process (1..=1024, default 4).
    pub max_exec_checks: usize,
    /// Servers by name, in name order (stable for diffs and dumps).
    pub servers: BTreeMap<String, Server>,
    /// `[healthd]`: used by `betwixt healthd -c FILE` only.
    pub healthd: Healthd,
}

/// `[healthd]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Healthd {
    pub listener: Option<std::net::SocketAddr>,
    pub singleflight: bool,
    /// In name order.
    pub checks: Vec<HealthdCheck>,
}

/// `[healthd.checks.NAME]`: one check of one address.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthdCheck {
    pub name: String,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub healthcheck: Healthcheck,
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
    /// State file (API-made servers, admin states, last health); `None` = not kept.
    pub state_file: Option<std::path::PathBuf>,
    /// Saved health older than this is ignored at start (default 5 minutes).
    pub state_max_age: Duration,
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
    /// Tune the sockets of bulk flows on sub-millisecond paths (`proxy::tune`; default true).
    pub low_rtt_tuning: bool,
    /// Relay in the kernel with the sockmap fast path (`proxy::sockmap`;
    /// default false; plain tcp servers only).
    pub sockmap: bool,
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
    /// The kind's documented default when unset (srv, json, plaintext, docker,
    /// lxd 5s; exec 3s; consul 2s); `ZERO` for static, or when "0" is written
    /// (= no timeout).
    pub timeout: Duration,
    pub failpolicy: FailPolicy,
}

/// Discovery kinds with their kind-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryKind {
    Static {
        backends: Vec<BackendSpec>,
    },
    /// `exec`: `exec_command` as written, program first (an argument may
    /// hold any character, a newline too).
    Exec {
        argv: Vec<String>,
    },
    /// The other dynamic kinds; their keys are validated already.
    /// `params` holds every key of that kind that is set, plus documented
    /// defaults (e.g. `srv_dns_protocol`), as strings; booleans and numbers
    /// are written as in TOML.
    Other {
        kind: String,
        params: BTreeMap<String, String>,
    },
}

/// `[servers.NAME.healthcheck]`.
///
/// Kind-specific settings are available twice: typed and validated in
/// [`Healthcheck::check`] (use this), and as the strings written in the file
/// in [`Healthcheck::params`] (key = gobetween key name, arrays/tables one
/// `k=v` or item per line; kept for dumps and logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    /// `none`, `ping`, `probe`, `exec`, `script`, `http`, `icmp` or `webhook`.
    pub kind: String,
    /// Time between checks; `Some` (and > 0) for every kind but `none`.
    pub interval: Option<Duration>,
    /// Per-check timeout, always < `interval`; `None` ("0"/unset): the runner
    /// cuts each check at `interval` (`health::check_timeout`).
    pub timeout: Option<Duration>,
    /// Check this port instead of the backend's (new key; `None` = backend port).
    pub port: Option<u16>,
    /// Consecutive failures before down / successes before up (>= 1).
    pub fails: u32,
    pub passes: u32,
    pub initial_healthy: bool,
    pub params: BTreeMap<String, String>,
    /// Interval while a transition is being counted (new key; `None` = `interval`).
    pub fast_interval: Option<Duration>,
    /// Interval while the backend is down (new key; `None` = `interval`).
    pub down_interval: Option<Duration>,
    /// Random spread of each interval, in percent 0..=100 (new key; default 0).
    pub jitter: u8,
    /// Health score over the last N results; 0 = off (new key; default 0).
    pub score_window: u32,
    /// What happens to open connections when the backend goes down.
    pub on_down: OnDown,
    /// The kind with its validated settings.
    pub check: Check,
}

impl Healthcheck {
    /// The health check of a server without a `[healthcheck]` section.
    pub fn none() -> Self {
        Self {
            kind: "none".into(),
            interval: None,
            timeout: None,
            port: None,
            fails: 1,
            passes: 1,
            initial_healthy: true,
            params: BTreeMap::new(),
            fast_interval: None,
            down_interval: None,
            jitter: 0,
            score_window: 0,
            on_down: OnDown::Keep,
            check: Check::None,
        }
    }
}

/// `on_down`: `keep` (gobetween: connections run on) or `close` them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDown {
    Keep,
    Close,
}

/// A health-check kind and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    None,
    /// TCP connect.
    Ping,
    Probe(Probe),
    /// Runs `command host port`; compares the whole stdout.
    Exec {
        command: String,
        positive_output: Option<String>,
        negative_output: Option<String>,
    },
    Script(Script),
    Http(HttpCheck),
    Icmp {
        count: u32,
    },
    Webhook {
        url: String,
        method: WebhookMethod,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProtocol {
    Tcp,
    Udp,
    Tls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub protocol: ProbeProtocol,
    /// `probe_send`, already un-escaped.
    pub send: Vec<u8>,
    pub expect: ProbeExpect,
    /// Bytes to read: `probe_recv_len`, or the length of the expected bytes.
    pub read_len: usize,
    /// For `tls`: skip certificate verification.
    pub tls_insecure: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeExpect {
    /// `starts_with`: the un-escaped `probe_recv` bytes.
    StartsWith(Vec<u8>),
    /// `regexp`: compiled once at load time (bytes API, unanchored).
    Regexp(BytesPattern),
}

/// A compiled byte regexp, compared by its pattern text (for config diffs).
#[derive(Debug, Clone)]
pub struct BytesPattern(pub regex::bytes::Regex);

impl PartialEq for BytesPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// `script`: exactly one of `script_path` / `script_content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    Path(std::path::PathBuf),
    Content(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Starts with `/`; default `/`.
    pub path: String,
    /// Upper case; default `GET`.
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// `Host` header; `None` = the backend host.
    pub host: Option<String>,
    pub tls: bool,
    pub insecure_skip_verify: bool,
    /// Inclusive ranges; empty = any status. Default `[(200, 399)]`.
    pub expected_status: Vec<(u16, u16)>,
    /// The body must contain this text.
    pub contains: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookMethod {
    Post,
    Get,
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
    /// Always `Some` in a validated config (ACME is rejected).
    pub cert: Option<CertPair>,
    /// Always empty in a validated config (kept for dumps).
    pub acme_hosts: Vec<String>,
    /// `"tls1"`, `"tls1.1"`, `"tls1.2"` or `"tls1.3"` (also `max_version`,
    /// and in [`BackendsTls`]); min <= max.
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

/// Present (with defaults) exactly when the protocol is udp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    pub max_requests: u64,
    pub max_responses: u64,
    pub transparent: bool,
    pub max_sessions: u32,
}

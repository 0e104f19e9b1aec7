//! `[logging]`, `[api]`, `[metrics]`, `[profiler]`, `[acme]`, `[defaults]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::values::{Zero, bind_addr, choice, duration_or, timeout};
use super::{Ctx, join};
use crate::config::raw::*;
use crate::config::*;

/// `[defaults]`, resolved (server values override these).
#[derive(Debug, Clone)]
pub struct Defaults {
    pub max_connections: u32,
    pub client_idle_timeout: Option<Duration>,
    pub backend_idle_timeout: Option<Duration>,
    pub backend_connection_timeout: Option<Duration>,
    pub backend_connection_retries: u32,
    pub drain_timeout: Duration,
    pub max_exec_checks: usize,
    pub low_rtt_tuning: bool,
    /// Applies to the servers that can use it (plain tcp) only.
    pub sockmap: bool,
}

pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const STATE_MAX_AGE: Duration = Duration::from_secs(300);

/// Largest `max_exec_checks` (a fork storm guard must not be a fork storm).
pub const MAX_EXEC_CHECKS: u32 = 1024;

/// Level names of `[logging] level` (gobetween's logrus names) and of
/// `healthd --log-level`.
pub const LOG_LEVELS: [(&str, Level); 8] = [
    ("panic", Level::Error),
    ("fatal", Level::Error),
    ("error", Level::Error),
    ("warn", Level::Warn),
    ("warning", Level::Warn),
    ("info", Level::Info),
    ("debug", Level::Debug),
    ("trace", Level::Trace),
];

pub fn logging(ctx: &mut Ctx, raw: Option<&RawLogging>) -> Logging {
    let default = RawLogging::default();
    let raw = raw.unwrap_or(&default);
    let level = choice(
        ctx,
        "logging.level",
        raw.level.as_ref(),
        &LOG_LEVELS,
        Level::Info,
    );
    if matches!(raw.level.as_deref(), Some("panic" | "fatal")) {
        ctx.warn(
            "logging.level",
            "\"panic\"/\"fatal\" are treated as \"error\"",
        );
    }
    let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    let format = choice(
        ctx,
        "logging.format",
        raw.format.as_ref(),
        &formats,
        LogFormat::Text,
    );
    let output = match raw.output.as_deref() {
        None | Some("") | Some("stdout") => LogOutput::Stdout,
        Some("stderr") => LogOutput::Stderr,
        Some(path) => LogOutput::File(PathBuf::from(path)),
    };
    Logging {
        level,
        output,
        format,
    }
}

pub fn api(ctx: &mut Ctx, raw: Option<&RawApi>) -> Api {
    let default = RawApi::default();
    let raw = raw.unwrap_or(&default);
    let basic_auth = raw.basic_auth.as_ref().and_then(|a| basic_auth(ctx, a));
    let tls = raw.tls.as_ref().and_then(|t| {
        cert_pair(
            ctx,
            "api.tls",
            t.cert_path.as_ref(),
            t.key_path.as_ref(),
            true,
        )
    });
    Api {
        enabled: raw.enabled.unwrap_or(false),
        bind: bind_or(ctx, "api.bind", raw.bind.as_ref(), ([127, 0, 0, 1], 8888)),
        cors: raw.cors.unwrap_or(false),
        basic_auth,
        tls,
        state_file: raw
            .state_file
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        state_max_age: duration_or(
            ctx,
            "api.state_max_age",
            raw.state_max_age.as_ref(),
            Zero::Allowed,
            STATE_MAX_AGE,
        ),
    }
}

fn basic_auth(ctx: &mut Ctx, raw: &RawBasicAuth) -> Option<BasicAuth> {
    let login = raw.login.as_ref().filter(|l| !l.is_empty());
    let password = raw.password.as_ref().filter(|p| !p.is_empty());
    match (login, password) {
        (Some(login), Some(password)) => Some(BasicAuth {
            login: login.clone(),
            password: Secret(password.clone()),
        }),
        (None, _) => {
            ctx.error(
                "api.basic_auth.login",
                "required when [api.basic_auth] is present",
            );
            None
        }
        (_, None) => {
            ctx.error(
                "api.basic_auth.password",
                "required when [api.basic_auth] is present",
            );
            None
        }
    }
}

/// `cert_path` + `key_path`: both or neither (`required`: not neither).
pub fn cert_pair(
    ctx: &mut Ctx,
    base: &str,
    cert: Option<&String>,
    key: Option<&String>,
    required: bool,
) -> Option<CertPair> {
    let cert = cert.filter(|c| !c.is_empty());
    let key = key.filter(|k| !k.is_empty());
    match (cert, key) {
        (Some(c), Some(k)) => Some(CertPair {
            cert_path: PathBuf::from(c),
            key_path: PathBuf::from(k),
        }),
        (None, None) if !required => None,
        (None, None) => {
            ctx.error(base, "cert_path and key_path are required");
            None
        }
        (Some(_), None) => {
            ctx.error(&join(base, "key_path"), "required when cert_path is set");
            None
        }
        (None, Some(_)) => {
            ctx.error(&join(base, "cert_path"), "required when key_path is set");
            None
        }
    }
}

fn bind_or(
    ctx: &mut Ctx,
    path: &str,
    text: Option<&String>,
    default: ([u8; 4], u16),
) -> SocketAddr {
    let default = SocketAddr::from(default);
    match text.filter(|t| !t.is_empty()) {
        None => default,
        Some(t) => bind_addr(t).unwrap_or_else(|e| {
            ctx.error(path, e);
            default
        }),
    }
}

pub fn metrics(ctx: &mut Ctx, raw: Option<&RawMetrics>) -> Metrics {
    let default = RawMetrics::default();
    let raw = raw.unwrap_or(&default);
    Metrics {
        enabled: raw.enabled.unwrap_or(false),
        bind: bind_or(
            ctx,
            "metrics.bind",
            raw.bind.as_ref(),
            ([127, 0, 0, 1], 9284),
        ),
    }
}

pub fn profiler(ctx: &mut Ctx, raw: Option<&RawProfiler>) {
    if raw.is_some() {
        ctx.warn(
            "profiler",
            "betwixt has no profiler; the section is ignored",
        );
    }
}

pub fn acme(ctx: &mut Ctx, raw: Option<&RawAcme>) {
    let Some(raw) = raw else { return };
    let challenges = [("http", ()), ("tls", ())];
    choice(
        ctx,
        "acme.challenge",
        raw.challenge.as_ref(),
        &challenges,
        (),
    );
    if let Some(bind) = raw.http_bind.as_ref().filter(|b| !b.is_empty())
        && let Err(e) = bind_addr(bind)
    {
        ctx.error("acme.http_bind", e);
    }
    ctx.warn(
        "acme",
        "ACME is not supported by betwixt; the section is ignored",
    );
}

pub fn defaults(ctx: &mut Ctx, raw: Option<&RawDefaults>) -> Defaults {
    let default = RawDefaults::default();
    let raw = raw.unwrap_or(&default);
    let at = |key| join("defaults", key);
    Defaults {
        max_connections: raw.max_connections.unwrap_or(0),
        client_idle_timeout: timeout(
            ctx,
            &at("client_idle_timeout"),
            raw.client_idle_timeout.as_ref(),
        ),
        backend_idle_timeout: timeout(
            ctx,
            &at("backend_idle_timeout"),
            raw.backend_idle_timeout.as_ref(),
        ),
        backend_connection_timeout: timeout(
            ctx,
            &at("backend_connection_timeout"),
            raw.backend_connection_timeout.as_ref(),
        ),
        backend_connection_retries: raw.backend_connection_retries.unwrap_or(1),
        drain_timeout: duration_or(
            ctx,
            &at("drain_timeout"),
            raw.drain_timeout.as_ref(),
            Zero::Allowed,
            DRAIN_TIMEOUT,
        ),
        max_exec_checks: max_exec_checks(ctx, raw.max_exec_checks),
        low_rtt_tuning: raw.low_rtt_tuning.unwrap_or(true),
        sockmap: raw.sockmap.unwrap_or(false),
    }
}

fn max_exec_checks(ctx: &mut Ctx, raw: Option<u32>) -> usize {
    let n = raw.unwrap_or(crate::health::DEFAULT_EXEC_LIMIT as u32);
    if !(1..=MAX_EXEC_CHECKS).contains(&n) {
        ctx.error(
            "defaults.max_exec_checks",
            format!("must be 1-{MAX_EXEC_CHECKS}"),
        );
    }
    n.clamp(1, MAX_EXEC_CHECKS) as usize
}

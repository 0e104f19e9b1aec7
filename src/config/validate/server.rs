//! `[servers.NAME]`: bind, protocol, balance, limits, timeouts, access,
//! proxy_protocol; sub-sections are delegated.

use super::globals::Defaults;
use super::values::{Zero, bind_addr, choice, duration, not_one_of, timeout};
use super::{Ctx, discovery, healthcheck, join, tls};
use crate::balance::BalanceKind;
use crate::config::raw::*;
use crate::config::*;
use crate::discovery::BackendSpec;
use crate::discovery::static_list::parse_line;
use crate::proxy::access::AccessList;
use crate::proxy::sni::HostMatcher;

/// Validate one server; `None` if it had errors (all of them recorded).
pub fn server(ctx: &mut Ctx, name: &str, raw: &RawServer, defaults: &Defaults) -> Option<Server> {
    let base = format!("servers.{name}");
    let at = |key: &str| join(&base, key);
    let before = ctx.errors.len();
    if name.is_empty() || name.chars().any(char::is_control) {
        // It names the server in every log line, metric and API path.
        ctx.error(
            &format!("servers.{name:?}"),
            "a server name must be non-empty, without control characters",
        );
    }
    let bind = bind(ctx, &at("bind"), raw.bind.as_ref());
    let protocol = protocol(ctx, &at("protocol"), raw.protocol.as_ref());
    let balance = balance(ctx, &at("balance"), raw.balance.as_ref());
    let proxy_protocol = proxy_protocol(
        ctx,
        &at("proxy_protocol"),
        raw.proxy_protocol.as_ref(),
        protocol,
    );
    let access = raw
        .access
        .as_ref()
        .and_then(|a| access(ctx, &at("access"), a));
    let discovery = discovery::discovery(ctx, &at("discovery"), raw.discovery.as_ref());
    let healthcheck =
        healthcheck::healthcheck(ctx, &at("healthcheck"), raw.healthcheck.as_ref(), protocol);
    let sections = tls::sections(ctx, &base, raw, protocol);
    if let (Some(sni), Some(d)) = (&sections.sni, &discovery) {
        sni_patterns(ctx, &at("discovery.static_list"), sni, d, raw);
    }
    if sections.sni.is_none() {
        unused_sni(ctx, &at("discovery.static_list"), raw);
    }
    if let (Protocol::Udp, Some(DiscoveryKind::Static { .. })) =
        (protocol, discovery.as_ref().map(|d| &d.kind))
    {
        udp_addresses(ctx, &at("discovery.static_list"), raw);
    }
    let limits = limits(ctx, &base, raw, defaults);
    let plain_tcp = protocol == Protocol::Tcp
        && sections.sni.is_none()
        && sections.tls.is_none()
        && sections.backends_tls.is_none();
    let sockmap = sockmap(
        ctx,
        &at("sockmap"),
        raw.sockmap,
        defaults.sockmap,
        plain_tcp,
    );
    if ctx.errors.len() > before {
        return None;
    }
    Some(Server {
        bind: bind?,
        protocol,
        balance,
        max_connections: limits.max_connections,
        client_idle_timeout: limits.client_idle_timeout,
        backend_idle_timeout: limits.backend_idle_timeout,
        backend_connection_timeout: limits.backend_connection_timeout,
        backend_connection_retries: limits.backend_connection_retries,
        drain_timeout: limits.drain_timeout,
        low_rtt_tuning: raw.low_rtt_tuning.unwrap_or(defaults.low_rtt_tuning),
        sockmap,
        access,
        proxy_protocol,
        discovery: discovery?,
        healthcheck,
        sni: sections.sni,
        tls: sections.tls,
        backends_tls: sections.backends_tls,
        udp: sections.udp,
    })
}

/// `sockmap`: only a plain tcp server (no TLS, no SNI) can hand its bytes
/// to the kernel; `[defaults] sockmap = true` applies to those only.
fn sockmap(ctx: &mut Ctx, path: &str, raw: Option<bool>, default: bool, plain_tcp: bool) -> bool {
    match raw {
        Some(true) if !plain_tcp => {
            ctx.error(
                path,
                "the sockmap fast path needs protocol \"tcp\" without tls, backends_tls or sni",
            );
            false
        }
        Some(on) => on,
        None => default && plain_tcp,
    }
}

/// Every static backend's `sni=` value must compile as a regexp when the
/// server matches hostnames by regexp.
fn sni_patterns(ctx: &mut Ctx, path: &str, sni: &Sni, discovery: &Discovery, raw: &RawServer) {
    let DiscoveryKind::Static { .. } = &discovery.kind else {
        return;
    };
    for (i, spec) in static_specs(raw) {
        if let Err(e) = HostMatcher::compile(sni.hostname_matching_strategy, &spec.sni) {
            ctx.error(&format!("{path}[{i}]"), e);
        }
    }
}

/// `sni=` on a static line routes only on a server with an `[sni]`
/// section; without one it does nothing (the first such line is named).
fn unused_sni(ctx: &mut Ctx, path: &str, raw: &RawServer) {
    if let Some((i, _)) = static_specs(raw).find(|(_, spec)| !spec.sni.is_empty()) {
        let server = path.split(".discovery").next().unwrap_or(path);
        ctx.warn(
            &format!("{path}[{i}]"),
            format!("sni= does nothing without a [{server}.sni] section"),
        );
    }
}

/// The static lines that parse, with their index (the others were
/// reported already).
fn static_specs(raw: &RawServer) -> impl Iterator<Item = (usize, BackendSpec)> + '_ {
    let lines = raw.discovery.as_ref().and_then(|d| d.static_list.as_ref());
    let parsed = lines.into_iter().flatten().map(|l| parse_line(l).ok());
    parsed.enumerate().filter_map(|(i, spec)| Some((i, spec?)))
}

/// Every static backend of a udp server must be an IP address: betwixt
/// does not resolve host names for udp backends.
fn udp_addresses(ctx: &mut Ctx, path: &str, raw: &RawServer) {
    for (i, spec) in static_specs(raw) {
        if spec.ip().is_none() {
            let host = &spec.host;
            ctx.error(
                &format!("{path}[{i}]"),
                format!(
                    "{host}: a udp backend needs an IP address (names are not resolved for udp)"
                ),
            );
        }
    }
}

fn bind(ctx: &mut Ctx, path: &str, raw: Option<&String>) -> Option<std::net::SocketAddr> {
    let Some(text) = raw.filter(|t| !t.is_empty()) else {
        ctx.error(path, "required (e.g. \"0.0.0.0:80\" or \":80\")");
        return None;
    };
    bind_addr(text).map_err(|e| ctx.error(path, e)).ok()
}

fn protocol(ctx: &mut Ctx, path: &str, raw: Option<&String>) -> Protocol {
    let options = [
        ("tcp", Protocol::Tcp),
        ("tls", Protocol::Tls),
        ("udp", Protocol::Udp),
    ];
    choice(ctx, path, raw, &options, Protocol::Tcp)
}

fn balance(ctx: &mut Ctx, path: &str, raw: Option<&String>) -> BalanceKind {
    let Some(name) = raw.filter(|n| !n.is_empty()) else {
        return BalanceKind::Weight;
    };
    BalanceKind::parse(name).unwrap_or_else(|| {
        ctx.error(path, not_one_of(name, &BalanceKind::NAMES));
        BalanceKind::Weight
    })
}

fn proxy_protocol(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<&RawProxyProtocol>,
    protocol: Protocol,
) -> Option<ProxyProtocolVersion> {
    let raw = raw?;
    if protocol != Protocol::Tcp {
        ctx.error(
            path,
            "proxy_protocol is only supported with protocol \"tcp\"",
        );
    }
    let path = join(path, "version");
    match raw.version.as_deref() {
        Some("1") => Some(ProxyProtocolVersion::V1),
        Some("2") => Some(ProxyProtocolVersion::V2),
        None | Some("") => {
            ctx.error(&path, "required: \"1\" or \"2\"");
            None
        }
        Some(v) => {
            ctx.error(&path, format!("\"{v}\" is not one of: 1, 2"));
            None
        }
    }
}

fn access(ctx: &mut Ctx, path: &str, raw: &RawAccess) -> Option<AccessList> {
    let options = [("allow", "allow"), ("deny", "deny")];
    let default = choice(
        ctx,
        &join(path, "default"),
        raw.default.as_ref(),
        &options,
        "allow",
    );
    let rules = raw.rules.clone().unwrap_or_default();
    match AccessList::parse(default, &rules) {
        Ok(list) => Some(list),
        Err(errors) => {
            let rules_path = join(path, "rules");
            for e in errors {
                ctx.error(&rules_path, e);
            }
            None
        }
    }
}

/// Connection limits and timeouts, with `[defaults]` applied.
struct Limits {
    max_connections: u32,
    client_idle_timeout: Option<std::time::Duration>,
    backend_idle_timeout: Option<std::time::Duration>,
    backend_connection_timeout: Option<std::time::Duration>,
    backend_connection_retries: u32,
    drain_timeout: std::time::Duration,
}

fn limits(ctx: &mut Ctx, base: &str, raw: &RawServer, d: &Defaults) -> Limits {
    let at = |key: &str| join(base, key);
    // A server value is used whenever it is present, even "0" (= none).
    let mut timeout_or = |key: &str, value: Option<&String>, default| match value {
        Some(v) if !v.is_empty() => timeout(ctx, &at(key), Some(v)),
        _ => default,
    };
    let client_idle_timeout = timeout_or(
        "client_idle_timeout",
        raw.client_idle_timeout.as_ref(),
        d.client_idle_timeout,
    );
    let backend_idle_timeout = timeout_or(
        "backend_idle_timeout",
        raw.backend_idle_timeout.as_ref(),
        d.backend_idle_timeout,
    );
    let backend_connection_timeout = timeout_or(
        "backend_connection_timeout",
        raw.backend_connection_timeout.as_ref(),
        d.backend_connection_timeout,
    );
    let drain_timeout = match raw.drain_timeout.as_ref().filter(|t| !t.is_empty()) {
        Some(t) => duration(ctx, &at("drain_timeout"), t, Zero::Allowed).unwrap_or_default(),
        None => d.drain_timeout,
    };
    Limits {
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        client_idle_timeout,
        backend_idle_timeout,
        backend_connection_timeout,
        backend_connection_retries: raw
            .backend_connection_retries
            .unwrap_or(d.backend_connection_retries),
        drain_timeout,
    }
}

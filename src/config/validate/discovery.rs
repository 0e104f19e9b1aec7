//! `[servers.NAME.discovery]`: common keys, the static list, and the keys of
//! the dynamic kinds (validated; `exec` typed, the others kept as string
//! params).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Map, Value};

use super::values::{Zero, choice, duration, host_port, http_url, value_string};
use super::{Ctx, join};
use crate::config::raw::RawDiscovery;
use crate::config::{Discovery, DiscoveryKind, FailPolicy};
use crate::discovery::static_list::parse_line;

const KINDS: [(&str, &str); 8] = [
    ("static", "static"),
    ("srv", "srv"),
    ("docker", "docker"),
    ("json", "json"),
    ("plaintext", "plaintext"),
    ("exec", "exec"),
    ("consul", "consul"),
    ("lxd", "lxd"),
];

/// Keys every kind has.
const COMMON: [&str; 4] = ["kind", "interval", "timeout", "failpolicy"];

/// Defaults written into `params` when the key is unset.
const PARAM_DEFAULTS: [(&str, &str); 10] = [
    ("srv_dns_protocol", "udp"),
    ("json_host_pattern", "host"),
    ("json_port_pattern", "port"),
    ("json_weight_pattern", "weight"),
    ("json_priority_pattern", "priority"),
    ("json_sni_pattern", "sni"),
    ("json_max_connections_pattern", "max_connections"),
    ("lxd_server_remote_name", "local"),
    ("lxd_container_interface", "eth0"),
    ("lxd_container_address_type", "IPv4"),
];

pub fn discovery(ctx: &mut Ctx, base: &str, raw: Option<&RawDiscovery>) -> Option<Discovery> {
    let Some(raw) = raw else {
        ctx.error(base, "required (e.g. kind = \"static\" with a static_list)");
        return None;
    };
    let kind_path = join(base, "kind");
    if raw.kind.as_deref().is_none_or(str::is_empty) {
        let names: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
        ctx.error(&kind_path, format!("required: one of {}", names.join(", ")));
        return None;
    }
    let before = ctx.errors.len();
    let kind = choice(ctx, &kind_path, raw.kind.as_ref(), &KINDS, "");
    if ctx.errors.len() > before {
        return None;
    }
    let set = set_keys(raw);
    warn_foreign_keys(ctx, base, kind, &set);
    let policies = [
        ("keeplast", FailPolicy::KeepLast),
        ("setempty", FailPolicy::SetEmpty),
    ];
    let failpolicy = choice(
        ctx,
        &join(base, "failpolicy"),
        raw.failpolicy.as_ref(),
        &policies,
        FailPolicy::KeepLast,
    );
    let interval = interval(ctx, base, raw, kind);
    let timeout = timeout(ctx, base, raw, kind);
    let kind = if kind == "static" {
        static_kind(ctx, base, raw)?
    } else {
        other_kind(ctx, base, raw, kind, &set)
    };
    Some(Discovery {
        kind,
        interval,
        timeout,
        failpolicy,
    })
}

/// The set keys and their values, read through serde (unset keys are omitted).
fn set_keys(raw: &RawDiscovery) -> Map<String, Value> {
    match serde_json::to_value(raw) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The kind a key belongs to (`None` for the common keys).
fn owner(key: &str) -> Option<&str> {
    if COMMON.contains(&key) {
        return None;
    }
    if key == "static_list" {
        return Some("static");
    }
    key.split('_').next()
}

fn warn_foreign_keys(ctx: &mut Ctx, base: &str, kind: &str, set: &Map<String, Value>) {
    for key in set.keys() {
        if owner(key).is_some_and(|o| o != kind) {
            ctx.warn(&join(base, key), format!("ignored for kind \"{kind}\""));
        }
    }
}

fn interval(ctx: &mut Ctx, base: &str, raw: &RawDiscovery, kind: &str) -> Option<Duration> {
    let path = join(base, "interval");
    let text = raw.interval.as_ref().filter(|t| !t.is_empty());
    let interval = text
        .and_then(|t| duration(ctx, &path, t, Zero::Allowed).ok())
        .filter(|d| !d.is_zero());
    if kind == "static" {
        if text.is_some() {
            ctx.warn(&path, "ignored for kind \"static\"");
        }
        return None;
    }
    if interval.is_none() && text.is_none_or(|t| t == "0") {
        ctx.warn(
            &path,
            "unset or \"0\": the backend list is fetched once and never refreshed",
        );
    }
    interval
}

fn timeout(ctx: &mut Ctx, base: &str, raw: &RawDiscovery, kind: &str) -> Duration {
    let default = match kind {
        "exec" => Duration::from_secs(3),
        "consul" => Duration::from_secs(2),
        "static" => Duration::ZERO,
        _ => Duration::from_secs(5),
    };
    let path = join(base, "timeout");
    match raw.timeout.as_ref().filter(|t| !t.is_empty()) {
        Some(_) if kind == "static" => {
            ctx.warn(&path, "ignored for kind \"static\"");
            default
        }
        Some(t) => duration(ctx, &path, t, Zero::Allowed).unwrap_or(default),
        None => default,
    }
}

fn static_kind(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) -> Option<DiscoveryKind> {
    let path = join(base, "static_list");
    let Some(lines) = raw.static_list.as_ref() else {
        ctx.error(
            &path,
            "required for kind \"static\" (e.g. [\"10.0.0.1:80 weight=2\"])",
        );
        return None;
    };
    if lines.is_empty() {
        ctx.warn(&path, "empty: the server has no backends");
    }
    let mut backends = Vec::with_capacity(lines.len());
    let mut seen = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match parse_line(line) {
            Ok(spec) if !seen.insert(spec.key()) => {
                ctx.error(&at, format!("duplicate backend {}", spec.key()));
            }
            Ok(spec) => backends.push(spec),
            Err(e) => ctx.error(&at, e),
        }
    }
    Some(DiscoveryKind::Static { backends })
}

fn other_kind(
    ctx: &mut Ctx,
    base: &str,
    raw: &RawDiscovery,
    kind: &str,
    set: &Map<String, Value>,
) -> DiscoveryKind {
    match kind {
        "srv" => super::discovery_kinds::srv(ctx, base, raw),
        "docker" => super::discovery_kinds::docker(ctx, base, raw),
        "json" => super::discovery_kinds::json(ctx, base, raw),
        "plaintext" => super::discovery_kinds::plaintext(ctx, base, raw),
        "exec" => {
            super::discovery_kinds::exec_discovery(ctx, base, raw);
            return DiscoveryKind::Exec {
                argv: raw.exec_command.clone().unwrap_or_default(),
            };
        }
        "consul" => super::discovery_kinds::consul(ctx, base, raw),
        _ => super::discovery_kinds::lxd(ctx, base, raw),
    }
    DiscoveryKind::Other {
        kind: kind.to_string(),
        params: params(kind, set),
    }
}

fn params(kind: &str, set: &Map<String, Value>) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = set
        .iter()
        .filter(|(k, _)| owner(k) == Some(kind))
        .map(|(k, v)| (k.clone(), value_string(v)))
        .collect();
    if let Some(dc) = params.remove("consul_service_datacenter") {
        params.entry("consul_datacenter".into()).or_insert(dc);
    }
    // Unset or empty: the default (gobetween's `if x == "" { x = default }`).
    for (key, value) in PARAM_DEFAULTS {
        if owner(key) == Some(kind) {
            let slot = params.entry(key.into()).or_default();
            if slot.is_empty() {
                *slot = value.into();
            }
        }
    }
    params
}

/// A required key of `kind`: reported when unset or empty.
pub fn require<'a>(
    ctx: &mut Ctx,
    base: &str,
    key: &str,
    kind: &str,
    value: Option<&'a String>,
) -> Option<&'a str> {
    let value = value.map(String::as_str).filter(|v| !v.is_empty());
    if value.is_none() {
        ctx.error(&join(base, key), format!("required for kind \"{kind}\""));
    }
    value
}

/// Check a required discovery URL. User info (`user:password@`) is sent as
/// basic auth by discovery (see `discovery::web::get`).
pub fn require_url(ctx: &mut Ctx, base: &str, key: &str, kind: &str, value: Option<&String>) {
    if let Some(url) = require(ctx, base, key, kind, value)
        && let Err(e) = http_url(&crate::discovery::web::user_info(url).0)
    {
        ctx.error(&join(base, key), e);
    }
}

/// Check a required `host:port` key.
pub fn require_host_port(ctx: &mut Ctx, base: &str, key: &str, kind: &str, value: Option<&String>) {
    if let Some(text) = require(ctx, base, key, kind, value)
        && let Err(e) = host_port(text)
    {
        ctx.error(&join(base, key), e);
    }
}

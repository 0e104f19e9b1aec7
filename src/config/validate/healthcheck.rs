//! `[servers.NAME.healthcheck]`: the keys shared by every kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::health_kinds;
use super::values::{Zero, choice, duration, value_string};
use super::{Ctx, join};
use crate::config::raw::RawHealthcheck;
use crate::config::{Check, Healthcheck, OnDown, Protocol};

/// Longest `score_window`: the score is recomputed over the whole window
/// on every result.
pub const MAX_SCORE_WINDOW: u32 = 1000;

const KINDS: [(&str, &str); 8] = [
    ("none", "none"),
    ("ping", "ping"),
    ("probe", "probe"),
    ("exec", "exec"),
    ("script", "script"),
    ("http", "http"),
    ("icmp", "icmp"),
    ("webhook", "webhook"),
];

const COMMON: [&str; 12] = [
    "kind",
    "interval",
    "timeout",
    "port",
    "fails",
    "passes",
    "initial_status",
    "fast_interval",
    "down_interval",
    "jitter",
    "score_window",
    "on_down",
];

const HTTP_KEYS: [&str; 8] = [
    "path",
    "method",
    "headers",
    "host",
    "tls",
    "insecure_skip_verify",
    "expected_status",
    "contains",
];

pub fn healthcheck(
    ctx: &mut Ctx,
    base: &str,
    raw: Option<&RawHealthcheck>,
    protocol: Protocol,
) -> Healthcheck {
    let Some(raw) = raw else {
        return Healthcheck::none();
    };
    let kind_path = join(base, "kind");
    if raw.kind.as_ref().is_none_or(|k| k.is_empty()) {
        let names: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
        ctx.error(&kind_path, format!("required: one of {}", names.join(", ")));
    }
    let kind = choice(ctx, &kind_path, raw.kind.as_ref(), &KINDS, "none");
    if kind == "ping" && protocol == Protocol::Udp {
        ctx.error(
            &kind_path,
            "\"ping\" (TCP connect) cannot check a udp server; use probe or exec",
        );
    }
    let set = set_keys(raw);
    warn_foreign_keys(ctx, base, kind, &set);
    if kind == "none" {
        return Healthcheck::none();
    }
    let mut hc = common(ctx, base, raw, kind);
    hc.check = health_kinds::check(ctx, base, raw, kind);
    hc.params = set
        .iter()
        .filter(|(k, _)| owner(k) == Some(kind))
        .map(|(k, v)| (k.clone(), value_string(v)))
        .collect();
    hc
}

fn set_keys(raw: &RawHealthcheck) -> serde_json::Map<String, Value> {
    match serde_json::to_value(raw) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// The kind a key belongs to (`None` for the common keys).
fn owner(key: &str) -> Option<&str> {
    if COMMON.contains(&key) {
        None
    } else if HTTP_KEYS.contains(&key) {
        Some("http")
    } else {
        key.split('_').next()
    }
}

fn warn_foreign_keys(ctx: &mut Ctx, base: &str, kind: &str, set: &serde_json::Map<String, Value>) {
    for key in set.keys() {
        let foreign = match owner(key) {
            Some(o) => o != kind,
            None => kind == "none" && key != "kind",
        };
        if foreign {
            ctx.warn(&join(base, key), format!("ignored for kind \"{kind}\""));
        }
    }
}

/// Everything but `check` and `params`.
fn common(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck, kind: &str) -> Healthcheck {
    let at = |key| join(base, key);
    let interval = required_interval(ctx, &at("interval"), raw.interval.as_ref());
    let timeout = raw
        .timeout
        .as_ref()
        .filter(|t| !t.is_empty())
        .and_then(|t| duration(ctx, &at("timeout"), t, Zero::Allowed).ok())
        .filter(|d| !d.is_zero());
    if let (Some(t), Some(i)) = (timeout, interval)
        && t >= i
    {
        ctx.error(&at("timeout"), "must be shorter than interval");
    }
    if raw.port == Some(0) {
        ctx.error(&at("port"), "must be 1-65535");
    }
    let statuses = [("healthy", true), ("unhealthy", false)];
    let initial_healthy = choice(
        ctx,
        &at("initial_status"),
        raw.initial_status.as_ref(),
        &statuses,
        true,
    );
    let jitter = raw.jitter.unwrap_or(0);
    if jitter > 100 {
        ctx.error(&at("jitter"), "a percentage: 0-100");
    }
    let score_window = raw.score_window.unwrap_or(0);
    if score_window > MAX_SCORE_WINDOW {
        ctx.error(
            &at("score_window"),
            format!("at most {MAX_SCORE_WINDOW} results (0 = off)"),
        );
    }
    let on_down = [("keep", OnDown::Keep), ("close", OnDown::Close)];
    Healthcheck {
        kind: kind.to_string(),
        interval,
        timeout,
        port: raw.port,
        fails: at_least_one(raw.fails),
        passes: at_least_one(raw.passes),
        initial_healthy,
        params: BTreeMap::new(),
        fast_interval: optional_interval(ctx, &at("fast_interval"), raw.fast_interval.as_ref()),
        down_interval: optional_interval(ctx, &at("down_interval"), raw.down_interval.as_ref()),
        jitter,
        score_window: score_window.min(MAX_SCORE_WINDOW),
        on_down: choice(
            ctx,
            &at("on_down"),
            raw.on_down.as_ref(),
            &on_down,
            OnDown::Keep,
        ),
        check: Check::None,
    }
}

fn required_interval(ctx: &mut Ctx, path: &str, text: Option<&String>) -> Option<Duration> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        ctx.error(path, "required for every kind but \"none\" (e.g. \"5s\")");
        return None;
    };
    duration(ctx, path, text, Zero::Rejected).ok()
}

fn optional_interval(ctx: &mut Ctx, path: &str, text: Option<&String>) -> Option<Duration> {
    let text = text.filter(|t| !t.is_empty())?;
    duration(ctx, path, text, Zero::Rejected).ok()
}

/// gobetween: fails/passes <= 0 mean 1.
fn at_least_one(value: Option<i64>) -> u32 {
    match value {
        Some(v) if v > 0 => u32::try_from(v).unwrap_or(u32::MAX),
        _ => 1,
    }
}

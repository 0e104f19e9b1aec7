//! Bounded fuzzing of what API clients send: routes and queries, the
//! `Authorization` header, and server bodies (`POST`/`PUT /servers/NAME`)
//! through the overlay and the whole config pipeline. A bad request gets
//! a clear 4xx; an accepted server dumps to a config that loads again.

use serde_json::{Value, json};
use tiny_http::Method;

use super::overlay::{Overlay, merge};
use super::{Shared, auth, dump, handlers};
use crate::config::{Format, NO_LOOKUP, parse};
use crate::fuzz;

const FILE: &str = r#"
[api]
enabled = true
bind = "127.0.0.1:8888"
[api.basic_auth]
login = "admin"
password = "s3cret"
[servers.web]
bind = "127.0.0.1:3000"
[servers.web.discovery]
kind = "static"
static_list = ["127.0.0.1:80"]
"#;

fn file() -> crate::config::raw::RawConfig {
    parse(FILE, Format::Toml).expect("sample").raw
}

#[test]
fn fuzz_routes() {
    let shared = Shared::new("/etc/betwixt.toml".into(), file());
    let methods = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
    ];
    let samples = [
        "/dump?format=json",
        "/dump?format=toml&x",
        "/servers/web/stats",
        "/servers/%77eb/backends/127.0.0.1:80/health",
        "/servers/web/backends/127.0.0.1%3A80/disable?close=true",
        "/status?refresh=4294967296",
        "/%ff%fe/%zz/%",
        "/metrics",
    ];
    let mut i = 0;
    fuzz::run_str("api route", 61, 750, &samples, |url| {
        i += 1;
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let method = &methods[i % methods.len()];
        let _ = handlers::route(method, path, query, url.as_bytes(), &shared, None);
    });
}

#[test]
fn fuzz_authorization() {
    let expected = auth::Expected::new("admin", "s3cret");
    let good = format!("Basic {}", crate::http::base64::encode(b"admin:s3cret"));
    let samples = [
        good.as_str(),
        "Bearer x",
        "basic  ",
        "Basic YWRtaW46czNjcmV0\0",
    ];
    fuzz::run_str("authorization", 62, 1500, &samples, |header| {
        if expected.check(Some(header)) {
            // Only the right credentials pass (any case of the scheme,
            // surrounding spaces).
            let token = header.trim().split_once(' ').map(|(_, t)| t.trim());
            assert_eq!(token, good.split_once(' ').map(|(_, t)| t), "{header:?}");
        }
    });
}

/// A posted server section goes through the overlay and the pipeline.
fn post(name: &str, body: &Value) -> bool {
    let mut overlay = Overlay::new();
    overlay.insert(name.to_string(), Some(body.clone()));
    let Ok(loaded) = merge(&file(), &overlay) else {
        return false;
    };
    // What the API accepted dumps to a config that loads again.
    let dump = dump::dump(&loaded.raw, Some("toml".into()));
    let super::http::Answer::Text(200, _, text) = dump else {
        panic!("{name:?} {body}: dump failed");
    };
    if let Err(e) = parse(&text, Format::Toml) {
        panic!("{name:?} {body}: the dump does not load: {e:?}\n{text}");
    }
    if let (Some(raw), Some(cfg)) = (
        loaded.raw.servers.as_ref().and_then(|s| s.get(name)),
        loaded.config.servers.get(name),
    ) {
        let _ = dump::filled(raw, cfg);
    }
    true
}

#[test]
fn fuzz_server_bodies() {
    NO_LOOKUP.with(|n| n.set(true));
    let bodies = vec![
        json!({"bind": "127.0.0.1:3001", "balance": "leastconn", "max_connections": 10,
               "discovery": {"kind": "static", "static_list": ["127.0.0.1:81 weight=2"]},
               "healthcheck": {"kind": "ping", "interval": "1s", "timeout": "500ms"}}),
        json!({"bind": "[::1]:3002", "protocol": "udp", "udp": {"max_responses": 1},
               "access": {"default": "deny", "rules": ["allow 127.0.0.1/32"]},
               "discovery": {"kind": "json", "json_endpoint": "http://127.0.0.1:1/x",
                             "json_host_pattern": "a.b[0]"}}),
        json!({"bind": "127.0.0.1:3003", "sni": {"hostname_matching_strategy": "regexp"},
               "discovery": {"kind": "static", "static_list": ["127.0.0.1:82 sni=.*"]},
               "healthcheck": {"kind": "http", "interval": "2s", "path": "/h",
                               "headers": {"Authorization": "x"}, "expected_status": "200-299"}}),
    ];
    let names = ["new", "web", "a.b", "x[0]", "é", " ", "servers", ""];
    let (mut i, mut accepted) = (0, 0);
    fuzz::run_json("api server body", 63, 125, &bodies, |body| {
        i += 1;
        accepted += usize::from(post(names[i % names.len()], body));
    });
    // The mutations leave many bodies valid: the dump check runs.
    assert!(accepted >= 5, "{accepted} accepted");
}

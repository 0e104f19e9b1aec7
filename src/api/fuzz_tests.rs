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
    // (Secrets come back as the `<redacted>` mark, which a load refuses
    // by design; nothing else may fail.)
    if let Err(e) = parse(&text, Format::Toml)
        && !e.iter().all(|e| e.message.contains("<redacted>"))
    {
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

/// Feed `bytes` to a fresh guard in slices of the given sizes.
fn guarded(bytes: &[u8], mut size: impl FnMut() -> usize) -> Result<Vec<u8>, u16> {
    let mut g = super::guard::Guard::new(super::http::BODY_LIMIT);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = size().clamp(1, bytes.len() - at);
        g.feed(&bytes[at..at + n], &mut out).map_err(|r| r.status)?;
        at += n;
    }
    assert!(out.len() <= bytes.len());
    Ok(out)
}

#[test]
fn fuzz_request_framing() {
    let samples: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /servers/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"PUT /servers/b HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\n{}GET /ping HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
    ];
    let mut rng = fuzz::Rng::new(65);
    fuzz::run("api request framing", 66, 600, samples, |bytes| {
        let whole = guarded(bytes, || usize::MAX);
        let most = 1 + rng.below(64);
        let sliced = guarded(bytes, || 1 + rng.below(most));
        // Slices pass on a prefix of what the whole passes on (a head is
        // parsed when a line ends, so a sliced stream may still hold an
        // unended one), and what the whole takes, slices take.
        match (&whole, &sliced) {
            (Ok(a), Ok(b)) => assert!(a.starts_with(b), "{a:?} vs {b:?}"),
            (Ok(_), Err(_)) => panic!("whole {whole:?} vs sliced {sliced:?}"),
            (Err(_), _) => {}
        }
    });
}

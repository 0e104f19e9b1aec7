//! gobetween sample-style configs, TOML and JSON.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::balance::BalanceKind;
use crate::discovery::BackendSpec;

pub const SAMPLE_TOML: &str = r#"
[logging]
level = "info"
output = "stdout"

[api]
enabled = true
bind = ":8888"
cors = false

[api.basic_auth]
login = "admin"
password = "secret"

[metrics]
enabled = true
bind = ":9284"

[defaults]
max_connections = 0
client_idle_timeout = "0"
backend_idle_timeout = "0"
backend_connection_timeout = "0"

[servers.sample]
bind = "localhost:3000"
protocol = "tcp"
balance = "weight"
max_connections = 10000
client_idle_timeout = "10m"
backend_idle_timeout = "10m"
backend_connection_timeout = "2s"

[servers.sample.discovery]
kind = "static"
static_list = [
    "localhost:8000 weight=5",
    "localhost:8001",
    "[::1]:8002 weight=1 priority=2 max_connections=10 sni=a.example.com",
]

[servers.sample.healthcheck]
fails = 1
passes = 1
interval = "2s"
timeout = "1s"
kind = "ping"

[servers.udpsample]
bind = "[::]:5353"
protocol = "udp"
balance = "roundrobin"
client_idle_timeout = "30s"

[servers.udpsample.udp]
max_responses = 1

[servers.udpsample.discovery]
kind = "static"
static_list = ["198.18.0.53:53", "198.18.0.54:53"]

[servers.udpsample.healthcheck]
kind = "probe"
interval = "5s"
timeout = "1s"
probe_protocol = "udp"
probe_send = '\x00\x01'
probe_recv = 'ok'
"#;

pub const SAMPLE_JSON: &str = r#"{
  "logging": {"level": "info", "output": "stdout"},
  "api": {"enabled": true, "bind": ":8888", "cors": false,
          "basic_auth": {"login": "admin", "password": "secret"}},
  "metrics": {"enabled": true, "bind": ":9284"},
  "defaults": {"max_connections": 0, "client_idle_timeout": "0",
               "backend_idle_timeout": "0", "backend_connection_timeout": "0"},
  "servers": {
    "sample": {
      "bind": "localhost:3000", "protocol": "tcp", "balance": "weight",
      "max_connections": 10000, "client_idle_timeout": "10m",
      "backend_idle_timeout": "10m", "backend_connection_timeout": "2s",
      "discovery": {"kind": "static", "static_list": [
        "localhost:8000 weight=5",
        "localhost:8001",
        "[::1]:8002 weight=1 priority=2 max_connections=10 sni=a.example.com"]},
      "healthcheck": {"fails": 1, "passes": 1, "interval": "2s", "timeout": "1s", "kind": "ping"}
    },
    "udpsample": {
      "bind": "[::]:5353", "protocol": "udp", "balance": "roundrobin",
      "client_idle_timeout": "30s",
      "udp": {"max_responses": 1},
      "discovery": {"kind": "static", "static_list": ["198.18.0.53:53", "198.18.0.54:53"]},
      "healthcheck": {"kind": "probe", "interval": "5s", "timeout": "1s",
                      "probe_protocol": "udp", "probe_send": "\\x00\\x01", "probe_recv": "ok"}
    }
  }
}"#;

fn backend(host: &str, port: u16) -> BackendSpec {
    BackendSpec {
        host: host.into(),
        port,
        weight: 1,
        priority: 1,
        max_connections: 0,
        sni: String::new(),
    }
}

#[test]
fn toml_and_json_give_the_same_config() {
    let toml = parse(SAMPLE_TOML, Format::Toml).unwrap();
    let json = parse(SAMPLE_JSON, Format::Json).unwrap();
    assert_eq!(toml.config, json.config);
    assert_eq!(toml.raw, json.raw);
    // The sample's sni= line has no [sni] section to route by.
    assert_eq!(
        toml.warnings,
        [
            "servers.sample.discovery.static_list[2]: sni= does nothing without a [servers.sample.sni] section"
        ],
    );
}

#[test]
fn sample_values() {
    let c = parse(SAMPLE_TOML, Format::Toml).unwrap().config;
    assert_eq!(c.api.bind, "0.0.0.0:8888".parse::<SocketAddr>().unwrap());
    assert!(c.api.enabled);
    assert_eq!(c.api.basic_auth.as_ref().unwrap().login, "admin");
    assert_eq!(
        c.metrics.bind,
        "0.0.0.0:9284".parse::<SocketAddr>().unwrap()
    );
    let s = &c.servers["sample"];
    assert!(s.bind.ip().is_loopback());
    assert_eq!(s.bind.port(), 3000);
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.balance, BalanceKind::Weight);
    assert_eq!(s.max_connections, 10000);
    assert_eq!(s.client_idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(s.backend_connection_timeout, Some(Duration::from_secs(2)));
    assert_eq!(s.backend_connection_retries, 1);
    assert_eq!(s.drain_timeout, Duration::from_secs(30));
    let DiscoveryKind::Static { backends } = &s.discovery.kind else {
        panic!("static expected")
    };
    let mut third = backend("[::1]", 8002);
    third.priority = 2;
    third.max_connections = 10;
    third.sni = "a.example.com".into();
    let mut first = backend("localhost", 8000);
    first.weight = 5;
    assert_eq!(backends, &[first, backend("localhost", 8001), third]);
    assert_eq!(s.healthcheck.kind, "ping");
    assert_eq!(s.healthcheck.check, Check::Ping);
    assert_eq!(s.healthcheck.interval, Some(Duration::from_secs(2)));
    assert_eq!(s.healthcheck.timeout, Some(Duration::from_secs(1)));
}

#[test]
fn udp_sample() {
    let c = parse(SAMPLE_TOML, Format::Toml).unwrap().config;
    let s = &c.servers["udpsample"];
    assert_eq!(s.bind, "[::]:5353".parse::<SocketAddr>().unwrap());
    assert_eq!(s.protocol, Protocol::Udp);
    let udp = s.udp.as_ref().unwrap();
    assert_eq!((udp.max_responses, udp.max_sessions), (1, 10_000));
    let Check::Probe(probe) = &s.healthcheck.check else {
        panic!("probe expected")
    };
    assert_eq!(probe.send, [0, 1]);
    assert_eq!(probe.expect, ProbeExpect::StartsWith(b"ok".to_vec()));
    assert_eq!(probe.read_len, 2);
    assert_eq!(s.healthcheck.params["probe_send"], "\\x00\\x01");
}

#[test]
fn empty_config_is_all_defaults() {
    let l = ok("");
    assert_eq!(l.config.logging.level, Level::Info);
    assert_eq!(l.config.logging.output, LogOutput::Stdout);
    assert!(!l.config.api.enabled);
    assert_eq!(l.config.api.bind, SocketAddr::from(([127, 0, 0, 1], 8888)));
    assert_eq!(
        l.config.metrics.bind,
        SocketAddr::from(([127, 0, 0, 1], 9284))
    );
    assert_warned(&l, "servers: no servers");
}

#[test]
fn json_numbers_in_ports_and_weights() {
    let json = r#"{"servers": {"j": {"bind": "127.0.0.1:7000",
        "discovery": {"kind": "static", "static_list": ["10.0.0.1:8080 weight=3 priority=0"]},
        "healthcheck": {"kind": "ping", "interval": "1s", "port": 9000, "fails": 0, "passes": -2}}}}"#;
    let c = parse(json, Format::Json).unwrap().config;
    let s = &c.servers["j"];
    let DiscoveryKind::Static { backends } = &s.discovery.kind else {
        panic!()
    };
    assert_eq!(
        (backends[0].port, backends[0].weight, backends[0].priority),
        (8080, 3, 0)
    );
    assert_eq!(s.healthcheck.port, Some(9000));
    assert_eq!((s.healthcheck.fails, s.healthcheck.passes), (1, 1));
}

#[test]
fn json_errors_match_toml_errors() {
    let json = r#"{"servers": {"web": {"bind": ":80", "balanse": "x",
        "discovery": {"kind": "static", "static_list": ["nope"]}}}}"#;
    let errors: Vec<String> = parse(json, Format::Json)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_has(
        &errors,
        "servers.web.balanse: unknown key (did you mean \"balance\"?)",
    );
    assert_has(&errors, "servers.web.discovery.static_list[0]: ");
}

#[test]
fn json_type_error_names_the_key() {
    let json = r#"{"servers": {"web": {"bind": ":80", "max_connections": "abc"}}}"#;
    let errors = parse(json, Format::Json).unwrap_err();
    assert_eq!(errors[0].path, "servers.web.max_connections");
}

#[test]
fn env_substitution_then_parse() {
    let text = super::super::env::substitute_with("[servers.web]\nbind = \":${PORT}\"\n", |_| {
        Some("9999".into())
    });
    assert!(text.contains(":9999"));
}

#[test]
fn truncated_and_mangled_input_never_panics() {
    for (text, format) in [(SAMPLE_TOML, Format::Toml), (SAMPLE_JSON, Format::Json)] {
        for (i, _) in text.char_indices() {
            let _ = parse(&text[..i], format);
            let mangled = format!("{}{}", &text[..i], &text[i..].replacen('"', "", 1));
            let _ = parse(&mangled, format);
        }
    }
}

/// The code blocks of one language in a Markdown text.
fn blocks<'a>(markdown: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    markdown
        .split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

#[test]
fn config_md_complete_example_parses_the_same_in_both_formats() {
    let doc = include_str!("../../../docs/CONFIG.md");
    let toml = blocks(doc, "toml").pop().unwrap();
    let json = blocks(doc, "json").pop().unwrap();
    let a = parse(toml, Format::Toml).unwrap();
    let b = parse(json, Format::Json).unwrap();
    assert_eq!(a.config, b.config);
    assert_eq!(
        a.config.servers["web"].client_idle_timeout,
        Some(Duration::from_secs(600))
    );
}

#[test]
fn config_md_healthcheck_examples_are_valid() {
    let doc = include_str!("../../../docs/CONFIG.md");
    let snippets: Vec<&str> = blocks(doc, "toml")
        .into_iter()
        .filter(|b| b.trim_start().starts_with("[servers.") && b.contains(".healthcheck]"))
        .collect();
    assert!(snippets.len() >= 4, "{}", snippets.len());
    for snippet in snippets {
        let name = snippet["[servers.".len()..]
            .split('.')
            .next()
            .unwrap_or_default();
        let hc = snippet.replace(&format!("[servers.{name}."), "[servers.web.");
        let loaded = super::ok(&format!("{}{hc}", super::server("")));
        assert!(
            loaded.warnings.is_empty(),
            "{snippet}: {:?}",
            loaded.warnings
        );
    }
}

//! Bounded fuzzing of the whole pipeline (TOML and JSON text, `${VAR}`
//! substitution, Go escapes, durations): any input gives a `Config` or
//! errors that name what is wrong, never a panic, a hang or a name lookup.

use super::*;
use crate::config::validate::values::NO_LOOKUP;
use crate::fuzz;

/// Every section and most keys, valid.
const RICH_TOML: &str = r#"
[logging]
level = "debug"
format = "json"
[api]
enabled = true
bind = "127.0.0.1:8888"
cors = true
state_max_age = "1h"
[api.basic_auth]
login = "a"
password = "b"
[metrics]
enabled = true
bind = ":9284"
[defaults]
max_connections = 100
client_idle_timeout = "1m30s"
backend_idle_timeout = "1.5h"
backend_connection_timeout = "500ms"
backend_connection_retries = 2
drain_timeout = "10s"
max_exec_checks = 4
[servers.a]
bind = "127.0.0.1:3000"
balance = "iphash1"
[servers.a.access]
default = "deny"
rules = ["allow 127.0.0.0/8", "deny ::1/128", "allow 198.18.0.1"]
[servers.a.proxy_protocol]
version = "2"
[servers.a.sni]
read_timeout = "2s"
hostname_matching_strategy = "regexp"
unexpected_hostname_strategy = "reject"
[servers.a.discovery]
kind = "static"
static_list = ["198.18.0.1:80 weight=5 priority=2 max_connections=9 sni=a.example", "[::1]:81"]
[servers.a.healthcheck]
kind = "probe"
interval = "2s"
timeout = "1s"
fails = 3
passes = 2
jitter = 10
score_window = 5
on_down = "close"
probe_protocol = "tcp"
probe_send = 'PING\r\n\x00\101\u00e9'
probe_recv = '^\+PONG'
probe_strategy = "regexp"
probe_recv_len = 16
[servers.b]
bind = "[::1]:3001"
balance = "leastconn"
[servers.b.discovery]
kind = "json"
interval = "10s"
timeout = "2s"
failpolicy = "setempty"
json_endpoint = "http://127.0.0.1:9/list"
json_host_pattern = "a.b[1].host"
json_port_pattern = ".port"
[servers.b.healthcheck]
kind = "http"
interval = "1s"
path = "/health?x=1"
method = "HEAD"
host = "example.test"
expected_status = ["200-299", 302]
contains = "ok"
headers = { "X-A" = "1" }
[servers.c]
bind = ":3002"
protocol = "udp"
[servers.c.udp]
max_requests = 1
max_responses = 9223372036854775807
[servers.c.discovery]
kind = "plaintext"
plaintext_endpoint = "http://127.0.0.1:9/x"
plaintext_regex_pattern = '^(?P<host>\S+):(?P<port>\d+)$'
[servers.d]
bind = ":3003"
[servers.d.discovery]
kind = "srv"
srv_lookup_server = "127.0.0.1:53"
srv_lookup_pattern = "_web._tcp.example."
srv_dns_protocol = "tcp"
[servers.d.healthcheck]
kind = "exec"
interval = "5s"
exec_command = "/bin/true ${HOME}"
exec_expected_positive_output = "1"
[servers.e]
bind = ":3004"
[servers.e.discovery]
kind = "consul"
consul_host = "127.0.0.1:8500"
consul_service_name = "web"
consul_service_tag = "v1"
[servers.f]
bind = ":3005"
[servers.f.discovery]
kind = "docker"
docker_endpoint = "unix:///var/run/docker.sock"
docker_container_private_port = 80
[servers.g]
bind = ":3006"
[servers.g.discovery]
kind = "lxd"
lxd_server_address = "unix:"
lxd_container_port = 80
[servers.h]
bind = ":3007"
[servers.h.discovery]
kind = "exec"
exec_command = ["/bin/echo", "127.0.0.1:80"]
[servers.h.healthcheck]
kind = "webhook"
interval = "2s"
webhook_url = "http://127.0.0.1:1/hook"
"#;

const RICH_JSON: &str = r#"{"servers": {"j": {"bind": "127.0.0.1:4000", "balance": "weight",
 "max_connections": 4294967295,
 "discovery": {"kind": "static", "static_list": ["127.0.0.1:1 weight=4294967295"]},
 "healthcheck": {"kind": "ping", "interval": "1s", "timeout": "0.5s", "fails": -1,
   "initial_status": "unhealthy", "icmp_count": 3}},
 "k": {"bind": "127.0.0.1:4001", "tls": {"cert_path": "/x.crt", "key_path": "/x.key",
   "min_version": "tls1.2", "ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]},
   "backends_tls": {"ignore_verify": true},
   "discovery": {"kind": "static", "static_list": []}}},
 "healthd": {"listener": "127.0.0.1:5500", "checks": {"x": {"address": "127.0.0.1:80",
   "healthcheck": {"kind": "probe", "interval": "1s", "probe_protocol": "tcp", "probe_send": "a", "probe_recv": "b"}}}}}"#;

fn samples() -> Vec<&'static str> {
    vec![
        RICH_TOML,
        samples::SAMPLE_TOML,
        include_str!("../../../examples/betwixt.toml"),
    ]
}

/// The parse never panics, and a failure says what is wrong.
fn check(text: &str, format: Format) {
    if let Err(errors) = parse(text, format) {
        assert!(!errors.is_empty(), "an Err with no error");
        for e in errors {
            assert!(!e.message.is_empty(), "an error without a message: {e:?}");
        }
    }
}

#[test]
fn samples_are_valid() {
    for text in samples() {
        ok(text);
    }
    for text in [RICH_JSON, samples::SAMPLE_JSON] {
        if let Err(e) = parse(text, Format::Json) {
            panic!("{e:#?}");
        }
    }
}

#[test]
fn fuzz_toml() {
    NO_LOOKUP.with(|n| n.set(true));
    fuzz::run_str("config toml", 1, 200, &samples(), |t| {
        check(t, Format::Toml)
    });
}

#[test]
fn fuzz_json() {
    NO_LOOKUP.with(|n| n.set(true));
    let samples = [RICH_JSON, samples::SAMPLE_JSON];
    fuzz::run_str("config json", 2, 200, &samples, |t| check(t, Format::Json));
}

#[test]
fn fuzz_env_substitution() {
    let values = ["", "${X}", "}", "\"\n[servers]", &"v".repeat(10_000)];
    let samples = ["a = \"${HOST}:${PORT}\"", "${${A}}${", "x${A}y${B_1}z${}"];
    let mut n = 0usize;
    fuzz::run_str("env", 3, 300, &samples, |t| {
        let out = crate::config::env::substitute_with(t, |_| {
            n += 1;
            Some(values[n % values.len()].to_string())
        });
        // Each `${` is replaced once, so the output is bounded by the
        // input times the longest value.
        assert!(out.len() <= t.len() * (1 + 10_000), "{}", out.len());
    });
}

#[test]
fn fuzz_unescape() {
    let samples = [
        r#"PING\r\n\x00\377\u00e9\U0001F600\a\b\f\v\\\""#,
        r"\x4",
        r"\400",
        r"\ud800",
    ];
    fuzz::run_str("unescape", 4, 1000, &samples, |t| {
        let _ = unescape(t);
    });
}

#[test]
fn fuzz_durations() {
    let samples = [
        "1h2m3.5s4ms5us6ns",
        "0",
        "+0",
        ".5s",
        "1.s",
        "3µs",
        "99999999999999999999h",
        "0.000000000000000000000000000000000001ns",
    ];
    fuzz::run_str("duration", 5, 750, &samples, |t| {
        if let Ok(d) = duration::parse(t) {
            // What parses formats and parses back to itself.
            assert_eq!(duration::parse(&duration::format(d)), Ok(d), "{t:?}");
        }
    });
}

#[test]
fn long_unknown_keys_are_cheap() {
    // "did you mean" compares every unknown key with every valid one: a
    // 1 MB body of long unknown keys must not cost seconds of CPU.
    let key = "k".repeat(100_000);
    let text = format!(
        "[servers.web]\nbind = \":8080\"\n{key}1 = 1\n{key}2 = 2\n{key}3 = 3\n\
         [servers.web.discovery]\nkind = \"static\"\nstatic_list = []\n"
    );
    let start = std::time::Instant::now();
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(start.elapsed() < fuzz::CASE_LIMIT, "{:?}", start.elapsed());
}

#[test]
fn fuzz_json_values() {
    // Valid documents with values replaced: reaches the validation of
    // every key with boundary numbers, wrong types and odd strings.
    NO_LOOKUP.with(|n| n.set(true));
    let docs: Vec<serde_json::Value> = [RICH_JSON, samples::SAMPLE_JSON]
        .iter()
        .map(|t| serde_json::from_str(t).expect("sample"))
        .chain(samples().iter().map(|t| {
            let table: toml::Table = toml::from_str(t).expect("sample");
            serde_json::to_value(table).expect("sample")
        }))
        .collect();
    fuzz::run_json("config values", 6, 125, &docs, |doc| {
        check(&doc.to_string(), Format::Json);
        // The same document as TOML, when TOML can hold it.
        if let Ok(text) = toml::to_string(doc) {
            check(&text, Format::Toml);
        }
    });
}

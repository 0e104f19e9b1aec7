//! json, plaintext and consul discovery against local HTTP servers (Consul
//! has no package here: the server answers exactly like Consul's
//! documented `/v1/health/service` endpoint).

mod common;
#[path = "common/http_server.rs"]
mod http_server;
#[path = "common/pki.rs"]
mod pki;

use common::discovery::{discovery_config, logged, serves, serves_nothing};
use common::*;
use http_server::{Body, HttpServer};

/// [`discovery_config`] polling every 100 ms.
fn dyn_config(port: u16, discovery: &str) -> String {
    discovery_config(port, &format!("interval = \"100ms\"\n{discovery}"))
}

fn json_of(backends: &[&Backend]) -> String {
    let items: Vec<String> = backends
        .iter()
        .map(|b| {
            format!(
                "{{\"addr\":{{\"ip\":\"127.0.0.1\"}},\"ports\":[{}],\"w\":2}}",
                b.addr.port()
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

const JSON_KEYS: &str = "json_host_pattern = \"addr.ip\"\njson_port_pattern = \"ports[0]\"\n\
                         json_weight_pattern = \"w\"\n";

/// An HTTP server listing `a` as JSON and betwixt on it with the `extra`
/// discovery keys, once it serves `a`.
fn json_serving_a(a: &Backend, extra: &str) -> (HttpServer, u16, Betwixt) {
    let http = HttpServer::start();
    http.set_text(&json_of(&[a]));
    let port = free_port();
    let disc = format!(
        "kind = \"json\"\njson_endpoint = \"{}\"\n{extra}{JSON_KEYS}",
        http.url("/list")
    );
    let bx = Betwixt::start_quiet(&dyn_config(port, &disc), &[port]);
    assert!(serves(port, &["a"]), "{}", bx.logs());
    (http, port, bx)
}

#[test]
fn json_changes_bad_answers_and_outage_with_keeplast() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (http, port, bx) = json_serving_a(&a, "");
    http.set_text(&json_of(&[&a, &b]));
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    http.set_text(&json_of(&[&b]));
    assert!(serves(port, &["b"]), "{}", bx.logs());

    // Invalid JSON, a 50 MiB body, a 500: errors; the last list serves on.
    http.set_text("[{\"addr\": ");
    assert!(logged(&bx, "invalid JSON"), "{}", bx.logs());
    assert_eq!(who(port), "b");
    http.set(200, Body::Huge(50 << 20));
    assert!(logged(&bx, "larger than"), "{}", bx.logs());
    assert_eq!(who(port), "b");
    http.set(500, Body::Bytes(b"oops".to_vec()));
    assert!(logged(&bx, "status 500"), "{}", bx.logs());
    assert_eq!(who(port), "b");
    http.stop();
    assert!(logged(&bx, "connect:"), "{}", bx.logs());
    assert_eq!(who(port), "b");
}

/// `http://user:pass@host/...` sends basic auth, as gobetween's Go client
/// does (it was refused at every fetch, password and all in the log).
#[test]
fn endpoint_user_info_is_basic_auth_and_never_logged() {
    let a = Backend::start("a");
    let http = HttpServer::start();
    http.set_text(&json_of(&[&a]));
    let port = free_port();
    let url = http.url("/list").replace("http://", "http://lb:s3cr%40t@");
    let disc = format!("kind = \"json\"\njson_endpoint = \"{url}\"\n{JSON_KEYS}");
    let bx = Betwixt::start_quiet(&dyn_config(port, &disc), &[port]);
    assert!(serves(port, &["a"]), "{}", bx.logs());
    // base64("lb:s3cr@t")
    let req = http.last_request();
    assert!(req.contains("Authorization: Basic bGI6czNjckB0"), "{req}");
    http.set(500, Body::Bytes(b"down".to_vec()));
    assert!(logged(&bx, "status 500"), "{}", bx.logs());
    assert!(!bx.logs().contains("s3cr"), "{}", bx.logs());
}

#[test]
fn json_setempty_empties_on_error() {
    let a = Backend::start("a");
    let (http, port, bx) = json_serving_a(&a, "failpolicy = \"setempty\"\n");
    http.set_text("not json");
    assert!(serves_nothing(port), "{}", bx.logs());
    http.set_text(&json_of(&[&a]));
    assert!(serves(port, &["a"]), "{}", bx.logs());
}

#[test]
fn plaintext_default_format_and_regex() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let http = HttpServer::start();
    http.set_text(&format!(
        "{}\ngarbage line\n{} weight=3\n",
        a.line(),
        b.line()
    ));
    let port = free_port();
    let disc = format!(
        "kind = \"plaintext\"\nplaintext_endpoint = \"{}\"\n",
        http.url("/")
    );
    let bx = Betwixt::start_quiet(&dyn_config(port, &disc), &[port]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    assert!(bx.logs().contains("line 2:"), "{}", bx.logs());

    let port2 = free_port();
    http.set_text(&format!(
        "127.0.0.1|{}\n127.0.0.1|{}\n",
        a.addr.port(),
        b.addr.port()
    ));
    let disc = format!(
        "kind = \"plaintext\"\nplaintext_endpoint = \"{}\"\n\
         plaintext_regex_pattern = '^(?P<host>[^|]+)\\|(?P<port>\\d+)$'\n",
        http.url("/")
    );
    let bx2 = Betwixt::start_quiet(&dyn_config(port2, &disc), &[port2]);
    assert!(serves(port2, &["a", "b"]), "{}", bx2.logs());
}

#[test]
fn consul_health_service_with_token_auth_tag_and_sni() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let http = HttpServer::start();
    let entry = |b: &Backend, svc_addr: &str, tags: &str| {
        format!(
            "{{\"Node\":{{\"ID\":\"x\",\"Node\":\"n\",\"Address\":\"127.0.0.1\",\"Datacenter\":\"dc1\"}},\
             \"Service\":{{\"ID\":\"web-{}\",\"Service\":\"web\",\"Tags\":[{tags}],\"Address\":\"{svc_addr}\",\
             \"Port\":{},\"Weights\":{{\"Passing\":1,\"Warning\":1}}}},\"Checks\":[]}}",
            b.name,
            b.addr.port()
        )
    };
    http.set_text(&format!(
        "[{},{}]",
        entry(&a, "", "\"prod\",\"sni=a.test\""),
        entry(&b, "127.0.0.1", "\"prod\"")
    ));
    let port = free_port();
    let disc = format!(
        "kind = \"consul\"\nconsul_host = \"{}\"\nconsul_service_name = \"web\"\n\
         consul_service_tag = \"prod\"\nconsul_service_passing_only = true\nconsul_datacenter = \"dc1\"\n\
         consul_acl_token = \"s3cret-token\"\nconsul_auth_username = \"user\"\nconsul_auth_password = \"pass\"\n",
        http.addr
    );
    let bx = Betwixt::start_quiet(&dyn_config(port, &disc), &[port]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    let req = http.last_request();
    assert!(
        req.starts_with("GET /v1/health/service/web?tag=prod&passing=1&dc=dc1 HTTP/1.1"),
        "{req}"
    );
    assert!(req.contains("X-Consul-Token: s3cret-token"), "{req}");
    assert!(req.contains("Authorization: Basic dXNlcjpwYXNz"), "{req}");
    assert!(
        !bx.logs().contains("s3cret-token"),
        "token leaked: {}",
        bx.logs()
    );
    // Consul down: keeplast serves on.
    http.stop();
    assert!(logged(&bx, "discovery failed"), "{}", bx.logs());
    assert!(serves(port, &["a", "b"]));
}

/// Consul over HTTPS with a client certificate: the local server requires
/// one from the test CA. Server `good` presents it and serves; server
/// `bad` presents one from another CA: its fetches fail (logged) and it has
/// no backends.
#[cfg(feature = "tls")]
#[test]
fn consul_over_tls_with_client_certificates() {
    let Some((_dir, pki)) = common::discovery::certificates_or_skip(pki::Pki::make) else {
        return;
    };
    let a = Backend::start("a");
    let https = HttpServer::start_tls(&pki.server_cert, &pki.server_key, Some(&pki.ca));
    https.set_text(&format!(
        "[{{\"Node\":{{\"Address\":\"127.0.0.1\"}},\"Service\":{{\"Service\":\"web\",         \"Tags\":[],\"Address\":\"127.0.0.1\",\"Port\":{}}}}}]",
        a.addr.port()
    ));
    let (good, bad) = (free_port(), free_port());
    let server = |name: &str, port: u16, cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n\n[servers.{name}.discovery]\n             kind = \"consul\"\ninterval = \"100ms\"\nconsul_host = \"{}\"\n             consul_service_name = \"web\"\nconsul_tls_enabled = true\n             consul_tls_cert_path = \"{}\"\nconsul_tls_key_path = \"{}\"\n             consul_tls_cacert_path = \"{}\"\n\n",
            https.addr,
            cert.display(),
            key.display(),
            pki.ca.display()
        )
    };
    let cfg = format!(
        "[logging]\nlevel = \"debug\"\n\n{}{}",
        server("good", good, &pki.client_cert, &pki.client_key),
        server("bad", bad, &pki.rogue_cert, &pki.rogue_key)
    );
    let bx = Betwixt::start_quiet(&cfg, &[good, bad]);
    assert!(serves(good, &["a"]), "{}", bx.logs());
    assert!(
        https
            .last_request()
            .starts_with("GET /v1/health/service/web"),
        "{}",
        https.last_request()
    );
    let bad_failed = logged(&bx, "(bad): discovery failed: GET https://127.0.0.1");
    assert!(bad_failed, "{}", bx.logs());
    assert!(serves_nothing(bad), "{}", bx.logs());
}

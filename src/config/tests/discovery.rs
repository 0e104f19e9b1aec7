//! `[servers.NAME.discovery]` rules.

use std::time::Duration;

use super::*;

fn disc(body: &str) -> String {
    format!("[servers.web]\nbind = \":8080\"\n[servers.web.discovery]\n{body}\n")
}

fn other(
    text: &str,
) -> (
    String,
    std::collections::BTreeMap<String, String>,
    Discovery,
) {
    let d = ok(text).config.servers["web"].discovery.clone();
    match &d.kind {
        DiscoveryKind::Other { kind, params } => (kind.clone(), params.clone(), d.clone()),
        DiscoveryKind::Exec { .. } => ("exec".into(), Default::default(), d.clone()),
        DiscoveryKind::Static { .. } => panic!("other kind expected"),
    }
}

#[test]
fn kind_is_required_and_checked() {
    assert_has(
        &errors(&disc("")),
        "servers.web.discovery.kind: required: one of static, srv",
    );
    assert_has(
        &errors(&disc("kind = \"statik\"")),
        "servers.web.discovery.kind: \"statik\" is not one of: static, srv, docker, json, plaintext, exec, consul, lxd (did you mean \"static\"?)",
    );
}

#[test]
fn static_list_errors() {
    assert_has(
        &errors(&disc("kind = \"static\"")),
        "servers.web.discovery.static_list: required",
    );
    let e = errors(&disc(
        "kind = \"static\"\nstatic_list = [\"a:1\", \"a:1 weight=2\", \"b:2 sni=x weight=1\", \"c\"]",
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(
        e[0],
        "servers.web.discovery.static_list[1]: duplicate backend a:1"
    );
    assert_has(
        &e,
        "servers.web.discovery.static_list[2]: `weight` is out of order",
    );
    assert_has(
        &e,
        "servers.web.discovery.static_list[3]: `c`: expected host:port",
    );
}

#[test]
fn static_ignores_interval_with_a_warning() {
    let l = ok(&disc(
        "kind = \"static\"\nstatic_list = []\ninterval = \"5s\"",
    ));
    assert_warned(
        &l,
        "servers.web.discovery.interval: ignored for kind \"static\"",
    );
    assert_warned(&l, "servers.web.discovery.static_list: empty");
    assert_eq!(l.config.servers["web"].discovery.interval, None);
}

#[test]
fn srv_keys() {
    let e = errors(&disc("kind = \"srv\"\nsrv_dns_protocol = \"quic\""));
    assert_has(
        &e,
        "servers.web.discovery.srv_lookup_server: required for kind \"srv\"",
    );
    assert_has(
        &e,
        "servers.web.discovery.srv_lookup_pattern: required for kind \"srv\"",
    );
    assert_has(
        &e,
        "servers.web.discovery.srv_dns_protocol: \"quic\" is not one of: udp, tcp",
    );
    let (kind, params, d) = other(&disc(
        "kind = \"srv\"\nsrv_lookup_server = \"198.18.0.53:53\"\nsrv_lookup_pattern = \"_a._tcp.example.\"\ninterval = \"10s\"",
    ));
    assert_eq!(kind, "srv");
    assert_eq!(params["srv_dns_protocol"], "udp");
    assert_eq!(params["srv_lookup_server"], "198.18.0.53:53");
    assert_eq!(d.interval, Some(Duration::from_secs(10)));
    assert_eq!(d.timeout, Duration::from_secs(5));
    assert_eq!(d.failpolicy, FailPolicy::KeepLast);
}

#[test]
fn interval_zero_warns_fetch_once() {
    let text = disc(
        "kind = \"json\"\njson_endpoint = \"http://x/list\"\ninterval = \"0\"\nfailpolicy = \"setempty\"",
    );
    let l = ok(&text);
    assert_warned(
        &l,
        "servers.web.discovery.interval: unset or \"0\": the backend list is fetched once",
    );
    let d = &l.config.servers["web"].discovery;
    assert_eq!((d.interval, d.failpolicy), (None, FailPolicy::SetEmpty));
    let e = errors(&disc(
        "kind = \"json\"\njson_endpoint = \"http://x\"\nfailpolicy = \"keep\"",
    ));
    assert_has(
        &e,
        "servers.web.discovery.failpolicy: \"keep\" is not one of: keeplast, setempty",
    );
    let e = errors(&disc(
        "kind = \"json\"\njson_endpoint = \"http://x\"\ninterval = \"10\"",
    ));
    assert_has(
        &e,
        "servers.web.discovery.interval: \"10\" has no unit (write \"10s\" or \"10ms\")",
    );
}

#[test]
fn default_timeouts_per_kind() {
    let cases = [
        ("kind = \"exec\"\nexec_command = [\"/bin/list\"]", 3),
        (
            "kind = \"consul\"\nconsul_host = \"c:8500\"\nconsul_service_name = \"s\"",
            2,
        ),
        ("kind = \"plaintext\"\nplaintext_endpoint = \"http://x\"", 5),
        (
            "kind = \"docker\"\ndocker_endpoint = \"unix:///var/run/docker.sock\"\ndocker_container_private_port = 80",
            5,
        ),
        ("kind = \"lxd\"\nlxd_server_address = \"unix:\"", 5),
    ];
    for (body, secs) in cases {
        let (_, _, d) = other(&disc(body));
        assert_eq!(d.timeout, Duration::from_secs(secs), "{body}");
    }
    let (_, _, d) = other(&disc(
        "kind = \"json\"\njson_endpoint = \"http://x\"\ntimeout = \"750ms\"",
    ));
    assert_eq!(d.timeout, Duration::from_millis(750));
}

#[test]
fn exec_command_is_an_array() {
    let (kind, _, d) = other(&disc(
        "kind = \"exec\"\nexec_command = [\"/bin/list\", \"-a\", \"two\\nlines\"]",
    ));
    assert_eq!(kind, "exec");
    let DiscoveryKind::Exec { argv } = d.kind else {
        panic!("exec expected")
    };
    // Each argument stays whole, a newline in one too.
    assert_eq!(argv, ["/bin/list", "-a", "two\nlines"]);
    assert_has(
        &errors(&disc("kind = \"exec\"\nexec_command = []")),
        "servers.web.discovery.exec_command: required",
    );
    let e = parse(
        &disc("kind = \"exec\"\nexec_command = \"/bin/list\""),
        Format::Toml,
    )
    .unwrap_err();
    assert_eq!(e[0].path, "servers.web.discovery.exec_command");
}

#[test]
fn docker_keys() {
    let e = errors(&disc(
        "kind = \"docker\"\ndocker_tls_enabled = true\ndocker_tls_cert_path = \"c\"",
    ));
    assert_has(&e, "servers.web.discovery.docker_endpoint: required");
    assert_has(
        &e,
        "servers.web.discovery.docker_container_private_port: required",
    );
    assert_has(
        &e,
        "servers.web.discovery.docker_tls_key_path: required when cert_path is set",
    );
}

#[test]
fn json_and_plaintext_keys() {
    assert_has(
        &errors(&disc("kind = \"json\"")),
        "servers.web.discovery.json_endpoint: required",
    );
    assert_has(
        &errors(&disc("kind = \"json\"\njson_endpoint = \"file:///x\"")),
        "servers.web.discovery.json_endpoint: \"file:///x\": expected an http:// or https:// URL",
    );
    let (_, params, _) = other(&disc(
        "kind = \"json\"\njson_endpoint = \"http://x\"\njson_host_pattern = \"addr.ip\"",
    ));
    assert_eq!(params["json_host_pattern"], "addr.ip");
    assert_eq!(params["json_port_pattern"], "port");
    // An empty pattern is the default, as in gobetween (it used to select
    // the whole element, and every fetch failed).
    let (_, params, _) = other(&disc(
        "kind = \"json\"\njson_endpoint = \"http://x\"\njson_weight_pattern = \"\"\njson_sni_pattern = \"\"",
    ));
    assert_eq!(params["json_weight_pattern"], "weight");
    assert_eq!(params["json_sni_pattern"], "sni");
    // A path that cannot be followed is an error at load, not at each fetch.
    for (key, bad) in [
        ("json_port_pattern", "ports[0"),
        ("json_host_pattern", "a..b"),
        ("json_weight_pattern", "w[x]"),
        ("json_sni_pattern", "s[0]x"),
    ] {
        let e = errors(&disc(&format!(
            "kind = \"json\"\njson_endpoint = \"http://x\"\n{key} = \"{bad}\""
        )));
        assert_has(
            &e,
            &format!("servers.web.discovery.{key}: bad path \"{bad}\""),
        );
    }
    let e = errors(&disc(
        "kind = \"plaintext\"\nplaintext_endpoint = \"http://x\"\nplaintext_regex_pattern = \"(\"",
    ));
    assert_has(
        &e,
        "servers.web.discovery.plaintext_regex_pattern: does not compile",
    );
    let e = errors(&disc(
        "kind = \"plaintext\"\nplaintext_endpoint = \"http://x\"\nplaintext_regex_pattern = '(?P<host>\\S+)'",
    ));
    assert_has(
        &e,
        "servers.web.discovery.plaintext_regex_pattern: needs a named group (?P<port>...)",
    );
    ok(&disc(
        "kind = \"plaintext\"\nplaintext_endpoint = \"http://x\"\nplaintext_regex_pattern = '^(?P<host>\\S+):(?P<port>\\d+)$'",
    ));
}

#[test]
fn consul_datacenter_alias() {
    let base =
        "kind = \"consul\"\nconsul_host = \"127.0.0.1:8500\"\nconsul_service_name = \"web\"\n";
    let text = disc(&format!("{base}consul_service_datacenter = \"dc1\""));
    let l = ok(&text);
    assert_warned(
        &l,
        "servers.web.discovery.consul_service_datacenter: obsolete key: use consul_datacenter",
    );
    let DiscoveryKind::Other { params, .. } = &l.config.servers["web"].discovery.kind else {
        panic!()
    };
    assert_eq!(params["consul_datacenter"], "dc1");
    assert!(!params.contains_key("consul_service_datacenter"));
    let text = disc(&format!(
        "{base}consul_datacenter = \"dc2\"\nconsul_service_datacenter = \"dc1\""
    ));
    let (_, params, _) = other(&text);
    assert_eq!(params["consul_datacenter"], "dc2");
    assert_has(
        &errors(&disc("kind = \"consul\"\nconsul_host = \"nohost\"")),
        "servers.web.discovery.consul_host: ",
    );
}

/// gobetween hands `consul_host` to Consul's Go client, which also takes
/// `http://HOST:PORT` and `https://HOST:PORT`.
#[test]
fn consul_host_may_carry_a_scheme() {
    let base = |host: &str, extra: &str| {
        disc(&format!(
            "kind = \"consul\"\nconsul_host = \"{host}\"\nconsul_service_name = \"web\"\n{extra}"
        ))
    };
    let url = |text: &str| {
        let (_, _, d) = other(text);
        match crate::discovery::Fetcher::of(&d) {
            Ok(Some(crate::discovery::Fetcher::Consul(c))) => c.url(),
            other => panic!("{other:?}"),
        }
    };
    let tls = "consul_tls_enabled = true";
    let cases = [
        ("127.0.0.1:8500", "", "http://127.0.0.1:8500/"),
        ("127.0.0.1:8500", tls, "https://127.0.0.1:8500/"),
        ("http://127.0.0.1:8500", "", "http://127.0.0.1:8500/"),
        ("https://127.0.0.1:8500", "", "https://127.0.0.1:8500/"),
        ("https://[::1]:8500", tls, "https://[::1]:8500/"),
    ];
    for (host, extra, want) in cases {
        let got = url(&base(host, extra));
        assert!(got.starts_with(want), "{host} {extra}: {got}");
    }
    let path = "servers.web.discovery.consul_host: ";
    assert_has(&errors(&base("http://127.0.0.1:8500", tls)), path);
    assert_has(&errors(&base("ftp://127.0.0.1:8500", "")), path);
    assert_has(&errors(&base("http://127.0.0.1", "")), path);
}

#[test]
fn lxd_keys() {
    let e = errors(&disc(
        "kind = \"lxd\"\nlxd_server_address = \"http://x\"\nlxd_container_address_type = \"ipv4\"",
    ));
    assert_has(
        &e,
        "servers.web.discovery.lxd_server_address: \"http://x\" must start with \"unix:\" or \"https:\"",
    );
    assert_has(
        &e,
        "servers.web.discovery.lxd_container_address_type: \"ipv4\" is not one of: IPv4, IPv6",
    );
    let (_, params, _) = other(&disc(
        "kind = \"lxd\"\nlxd_server_address = \"https://h:8443\"\nlxd_accept_server_cert = true",
    ));
    assert_eq!(params["lxd_accept_server_cert"], "true");
    assert_eq!(params["lxd_container_address_type"], "IPv4");
}

#[test]
fn keys_of_other_kinds_warn() {
    let l = ok(&disc(
        "kind = \"static\"\nstatic_list = [\"a:1\"]\nsrv_lookup_server = \"x:53\"\ndocker_cache_ttl = \"5s\"",
    ));
    assert_warned(
        &l,
        "servers.web.discovery.srv_lookup_server: ignored for kind \"static\"",
    );
    assert_warned(
        &l,
        "servers.web.discovery.docker_cache_ttl: obsolete gobetween key",
    );
}

#[test]
fn lxd_inert_keys_are_warned_about() {
    let l = ok(&disc(
        "kind = \"lxd\"\nlxd_server_address = \"unix:\"\nlxd_generate_client_certs = true\n\
         lxd_server_remote_password = \"pw-secret\"\nlxd_server_remote_name = \"edge\"",
    ));
    for key in [
        "lxd_generate_client_certs",
        "lxd_server_remote_password",
        "lxd_server_remote_name",
    ] {
        assert_warned(&l, &format!("servers.web.discovery.{key}: ignored"));
    }
    assert!(l.warnings.iter().all(|w| !w.contains("pw-secret")));
    // Unset, they are not mentioned (remote_name's default included).
    let quiet = ok(&disc("kind = \"lxd\"\nlxd_server_address = \"unix:\""));
    assert!(
        quiet.warnings.iter().all(|w| !w.contains("lxd_")),
        "{:?}",
        quiet.warnings
    );
}

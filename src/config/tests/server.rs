//! Server, global-section and cross-key rules.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

#[test]
fn reports_every_error_at_once() {
    let text = r#"
[logging]
level = "loud"

[servers.web]
bind = "nowhere"
balance = "fastest"
protocol = "sctp"
client_idle_timeout = "50"

[servers.web.discovery]
kind = "static"
static_list = ["10.0.0.1", "10.0.0.2:80 priority=1 weight=2"]

[servers.other]
bind = ":81"
"#;
    let e = errors(text);
    assert_has(&e, "logging.level: \"loud\" is not one of");
    assert_has(&e, "servers.web.bind: ");
    assert_has(
        &e,
        "servers.web.balance: \"fastest\" is not one of: weight, roundrobin",
    );
    assert_has(
        &e,
        "servers.web.protocol: \"sctp\" is not one of: tcp, tls, udp",
    );
    assert_has(&e, "servers.web.client_idle_timeout: \"50\" has no unit");
    assert_has(&e, "servers.web.discovery.static_list[0]: ");
    assert_has(&e, "servers.web.discovery.static_list[1]: ");
    assert_has(&e, "servers.other.discovery: required");
    assert_eq!(e.len(), 8, "{e:#?}");
}

#[test]
fn unknown_key_with_suggestion() {
    let e = errors(&server("balanse = \"roundrobin\""));
    assert_eq!(
        e,
        ["servers.web.balanse: unknown key (did you mean \"balance\"?)"]
    );
    let e = errors("[defaults]\nbalance = \"weight\"\n[servers]\n");
    assert_has(
        &e,
        "defaults.balance: unknown key (valid keys here: max_connections",
    );
    let e = errors("[apii]\nenabled = true\n");
    assert_eq!(e, ["apii: unknown key (did you mean \"api\"?)"]);
}

#[test]
fn unknown_keys_and_a_type_error_together() {
    let e = errors("[servers.web]\nbindd = \":80\"\nmax_connections = \"abc\"\n");
    assert_has(&e, "servers.web.bindd: unknown key");
    assert_has(
        &e,
        "servers.web.max_connections: invalid type: string \"abc\"",
    );
}

#[test]
fn obsolete_keys_warn() {
    let text = format!(
        "[globals]\nx = 1\n[profiler]\nenabled = true\nbind = \":6060\"\n{}\
         [servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"1s\"\nping_timeout_duration = \"1s\"\n\
         [servers.web.tls]\nprefer_server_ciphers = true\ncert_path = \"c\"\nkey_path = \"k\"\n",
        server("")
    );
    let l = ok(&text);
    assert_warned(&l, "globals: obsolete gobetween key, ignored");
    assert_warned(&l, "profiler: betwixt has no profiler");
    assert_warned(
        &l,
        "servers.web.healthcheck.ping_timeout_duration: obsolete gobetween key",
    );
    assert_warned(
        &l,
        "servers.web.tls.prefer_server_ciphers: obsolete gobetween key",
    );
    assert_warned(&l, "servers.web.tls: ignored unless protocol is \"tls\"");
}

#[test]
fn unitless_duration_is_an_error() {
    let e = errors(&server("client_idle_timeout = \"50\""));
    assert_eq!(
        e,
        [
            "servers.web.client_idle_timeout: \"50\" has no unit (write \"50s\" or \"50ms\"); \
          gobetween would silently disable the timeout"
        ]
    );
    let e = errors("[defaults]\nbackend_idle_timeout = \"-1s\"\n");
    assert_has(&e, "defaults.backend_idle_timeout: \"-1s\": negative");
    let e = errors(&server("backend_connection_timeout = \"soon\""));
    assert_has(
        &e,
        "servers.web.backend_connection_timeout: \"soon\" is not a duration",
    );
}

#[test]
fn defaults_apply_and_server_values_override() {
    let text = format!(
        "[defaults]\nmax_connections = 5\nclient_idle_timeout = \"1m\"\nbackend_idle_timeout = \"2m\"\n\
         backend_connection_timeout = \"3s\"\nbackend_connection_retries = 4\ndrain_timeout = \"10s\"\n{}",
        server("client_idle_timeout = \"0\"\nmax_connections = 7\ndrain_timeout = \"0\"")
    );
    let s = ok(&text).config.servers["web"].clone();
    assert_eq!(s.max_connections, 7);
    assert_eq!(s.client_idle_timeout, None);
    assert_eq!(s.backend_idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(s.backend_connection_timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.backend_connection_retries, 4);
    assert_eq!(s.drain_timeout, Duration::ZERO);
}

#[test]
fn sockmap_defaults_off_and_only_for_plain_tcp() {
    assert!(!ok(&server("")).config.servers["web"].sockmap);
    assert!(ok(&server("sockmap = true")).config.servers["web"].sockmap);
    let udp = server("protocol = \"udp\"\nsockmap = true");
    assert_has(
        &errors(&udp),
        "servers.web.sockmap: the sockmap fast path needs protocol \"tcp\"",
    );
    let backends_tls = format!("{}[servers.web.backends_tls]\n", server("sockmap = true"));
    assert_has(&errors(&backends_tls), "servers.web.sockmap: ");
    // From [defaults]: on for plain tcp servers, off (no error) elsewhere.
    let on = format!("[defaults]\nsockmap = true\n{}", server(""));
    assert!(ok(&on).config.servers["web"].sockmap);
    let udp = format!(
        "[defaults]\nsockmap = true\n{}",
        server("protocol = \"udp\"\nclient_idle_timeout = \"10s\"")
    );
    assert!(!ok(&udp).config.servers["web"].sockmap);
    let off = format!("[defaults]\nsockmap = true\n{}", server("sockmap = false"));
    assert!(!ok(&off).config.servers["web"].sockmap);
}

#[test]
fn low_rtt_tuning_defaults_on_and_follows_defaults() {
    assert!(ok(&server("")).config.servers["web"].low_rtt_tuning);
    let off = format!("[defaults]\nlow_rtt_tuning = false\n{}", server(""));
    assert!(!ok(&off).config.servers["web"].low_rtt_tuning);
    let back_on = format!(
        "[defaults]\nlow_rtt_tuning = false\n{}",
        server("low_rtt_tuning = true")
    );
    assert!(ok(&back_on).config.servers["web"].low_rtt_tuning);
    let e = errors(&server("low_rtt_tunning = false"));
    assert_has(
        &e,
        "servers.web.low_rtt_tunning: unknown key (did you mean \"low_rtt_tuning\"?)",
    );
}

#[test]
fn server_defaults() {
    let s = ok(&server("")).config.servers["web"].clone();
    assert_eq!(s.bind, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.balance, crate::balance::BalanceKind::Weight);
    assert_eq!((s.max_connections, s.backend_connection_retries), (0, 1));
    assert_eq!(s.client_idle_timeout, None);
    assert_eq!(s.drain_timeout, Duration::from_secs(30));
    assert_eq!(s.healthcheck, Healthcheck::none());
    assert!(s.sni.is_none() && s.tls.is_none() && s.udp.is_none() && s.access.is_none());
}

#[test]
fn ipv6_binds() {
    let text = "[servers.a]\nbind = \"[::1]:8000\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = []\n\
                [servers.b]\nbind = \"[::]:9000\"\n[servers.b.discovery]\nkind = \"static\"\nstatic_list = []\n";
    let c = ok(text).config;
    assert_eq!(
        c.servers["a"].bind,
        "[::1]:8000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.servers["b"].bind,
        "[::]:9000".parse::<SocketAddr>().unwrap()
    );
    let e = errors(&server("").replace("\":8080\"", "\"::1:8080\""));
    assert_has(
        &e,
        "servers.web.bind: \"::1:8080\": not an address; write IPv6 in brackets",
    );
}

#[test]
fn missing_bind() {
    let e = errors("[servers.web.discovery]\nkind = \"static\"\nstatic_list = []\n");
    assert_has(&e, "servers.web.bind: required");
}

#[test]
fn logging_levels_and_outputs() {
    let l = ok("[logging]\nlevel = \"fatal\"\noutput = \"/var/log/b.log\"\nformat = \"json\"\n");
    assert_eq!(l.config.logging.level, Level::Error);
    assert_eq!(
        l.config.logging.output,
        LogOutput::File("/var/log/b.log".into())
    );
    assert_eq!(l.config.logging.format, LogFormat::Json);
    let l = ok("[logging]\nlevel = \"warning\"\noutput = \"stderr\"\n");
    assert_eq!(l.config.logging.level, Level::Warn);
    assert_eq!(l.config.logging.output, LogOutput::Stderr);
    assert_has(&errors("[logging]\nformat = \"xml\"\n"), "logging.format: ");
}

#[test]
fn api_auth_and_tls_need_both_keys() {
    let e = errors("[api.basic_auth]\nlogin = \"a\"\n[api.tls]\ncert_path = \"c\"\n");
    assert_has(&e, "api.basic_auth.password: required");
    assert_has(&e, "api.tls.key_path: required when cert_path is set");
    let l = ok("[api]\nbind = \"127.0.0.1:1\"\n[api.tls]\ncert_path = \"c\"\nkey_path = \"k\"\n");
    assert!(l.config.api.tls.is_some());
}

#[test]
fn acme_section_is_parsed_and_ignored() {
    let l = ok("[acme]\nchallenge = \"http\"\nhttp_bind = \"0.0.0.0:80\"\ncache_dir = \"/tmp\"\n");
    assert_warned(&l, "acme: ACME is not supported");
    assert_has(&errors("[acme]\nchallenge = \"dns\"\n"), "acme.challenge: ");
}

#[test]
fn tls_protocol_rules() {
    let e = errors(&server("protocol = \"tls\""));
    assert_has(&e, "servers.web.tls: required when protocol is \"tls\"");
    let e = errors(&format!(
        "{}[servers.web.tls]\ncert_path = \"c\"\n",
        server("protocol = \"tls\"")
    ));
    assert_has(
        &e,
        "servers.web.tls.key_path: required when cert_path is set",
    );
    let e = errors(&format!(
        "{}[servers.web.tls]\nacme_hosts = [\"a.example\"]\n",
        server("protocol = \"tls\"")
    ));
    assert_eq!(
        e,
        [
            "servers.web.tls.acme_hosts: ACME is not supported by betwixt (no public reachability \
          on edge boxes); use cert_path/key_path"
        ]
    );
    let text = format!(
        "{}[servers.web.tls]\ncert_path = \"c\"\nkey_path = \"k\"\nmin_version = \"tls1.2\"\nmax_version = \"tls1.3\"\n",
        server("protocol = \"tls\"")
    );
    let tls = ok(&text).config.servers["web"].tls.clone().unwrap();
    assert_eq!(tls.min_version.as_deref(), Some("tls1.2"));
    assert!(!tls.session_tickets);
}

#[test]
fn tls_versions() {
    let text = format!(
        "{}[servers.web.tls]\ncert_path = \"c\"\nkey_path = \"k\"\nmin_version = \"ssl3\"\n",
        server("protocol = \"tls\"")
    );
    assert_has(
        &errors(&text),
        "servers.web.tls.min_version: \"ssl3\" is not one of: tls1, tls1.1",
    );
    let text = format!(
        "{}[servers.web.backends_tls]\nmin_version = \"tls1.3\"\nmax_version = \"tls1.2\"\n",
        server("")
    );
    assert_has(
        &errors(&text),
        "servers.web.backends_tls.min_version: is newer than max_version",
    );
}

#[test]
fn backends_tls_rules() {
    let text = format!(
        "{}[servers.web.backends_tls]\nkey_path = \"k\"\n",
        server("")
    );
    assert_has(
        &errors(&text),
        "servers.web.backends_tls.cert_path: required when key_path is set",
    );
    let text = format!(
        "{}[servers.web.backends_tls]\nignore_verify = true\n",
        server("protocol = \"udp\"\nclient_idle_timeout = \"10s\"")
    );
    assert_has(
        &errors(&text),
        "servers.web.backends_tls: backends_tls is not supported with protocol \"udp\"",
    );
    let text = format!(
        "{}[servers.web.backends_tls]\nroot_ca_cert_path = \"/ca.pem\"\ncert_path = \"c\"\nkey_path = \"k\"\n",
        server("")
    );
    let b = ok(&text).config.servers["web"]
        .backends_tls
        .clone()
        .unwrap();
    assert!(b.client_cert.is_some() && b.root_ca_cert_path.is_some());
}

/// betwixt does not resolve host names for udp backends: a name in a
/// static list is an error at load (every datagram used to fail with a
/// warning).
#[test]
fn udp_static_backends_need_ip_addresses() {
    let text = server("protocol = \"udp\"\nclient_idle_timeout = \"10s\"").replace(
        "[\"10.0.0.1:80\"]",
        "[\"10.0.0.1:53\", \"localhost:53\", \"[::1]:53\"]",
    );
    let e = errors(&text);
    assert_has(
        &e,
        "servers.web.discovery.static_list[1]: localhost: a udp backend needs an IP address",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    ok(&text.replace("localhost:53", "127.0.0.1:53"));
    ok(&server("").replace("10.0.0.1:80", "localhost:80"));
}

#[test]
fn udp_needs_a_way_to_end_sessions() {
    let e = errors(&server("protocol = \"udp\""));
    assert_has(&e, "servers.web: a udp server needs client_idle_timeout");
    // Values only in [defaults] do not count, as in gobetween.
    let text = format!(
        "[defaults]\nclient_idle_timeout = \"10s\"\n{}",
        server("protocol = \"udp\"")
    );
    assert_has(&errors(&text), "servers.web: a udp server needs");
    let s = ok(&format!(
        "{}[servers.web.udp]\nmax_requests = 1\n",
        server("protocol = \"udp\"")
    ));
    assert_eq!(
        s.config.servers["web"].udp.as_ref().unwrap().max_requests,
        1
    );
    ok(&server("protocol = \"udp\"\nbackend_idle_timeout = \"5s\""));
    let text = format!(
        "{}[servers.web.udp]\nmax_sessions = 0\nmax_responses = 1\n",
        server("protocol = \"udp\"")
    );
    assert_has(
        &errors(&text),
        "servers.web.udp.max_sessions: must be greater than 0",
    );
}

#[test]
fn server_max_connections_on_udp_is_warned_about() {
    let udp = ok(&server(
        "protocol = \"udp\"\nclient_idle_timeout = \"10s\"\nmax_connections = 5",
    ));
    assert_warned(
        &udp,
        "servers.web.max_connections: ignored for protocol \"udp\"",
    );
    let tcp = ok(&server("max_connections = 5"));
    assert!(tcp.warnings.is_empty(), "{:#?}", tcp.warnings);
}

#[test]
fn backend_sni_without_an_sni_section_is_warned_about() {
    let text = server("").replace(
        "\"10.0.0.1:80\"",
        "\"10.0.0.1:80\", \"10.0.0.2:80 sni=a.example\"",
    );
    assert_warned(
        &ok(&text),
        "servers.web.discovery.static_list[1]: sni= does nothing without a [servers.web.sni] section",
    );
    let with = format!("{text}[servers.web.sni]\n");
    assert!(ok(&with).warnings.is_empty(), "{:#?}", ok(&with).warnings);
}

#[test]
fn proxy_protocol_rules() {
    let text = format!(
        "{}[servers.web.proxy_protocol]\nversion = \"2\"\n",
        server("")
    );
    assert_eq!(
        ok(&text).config.servers["web"].proxy_protocol,
        Some(ProxyProtocolVersion::V2)
    );
    let text = format!(
        "{}[servers.web.proxy_protocol]\nversion = \"3\"\n",
        server("")
    );
    assert_has(
        &errors(&text),
        "servers.web.proxy_protocol.version: \"3\" is not one of: 1, 2",
    );
    let text = format!("{}[servers.web.proxy_protocol]\n", server(""));
    assert_has(
        &errors(&text),
        "servers.web.proxy_protocol.version: required",
    );
    let text = format!(
        "{}[servers.web.proxy_protocol]\nversion = \"1\"\n[servers.web.tls]\ncert_path = \"c\"\nkey_path = \"k\"\n",
        server("protocol = \"tls\"")
    );
    assert_has(
        &errors(&text),
        "servers.web.proxy_protocol: proxy_protocol is only supported with protocol \"tcp\"",
    );
}

#[test]
fn sni_rules() {
    let text = format!("{}[servers.web.sni]\n", server(""));
    let sni = ok(&text).config.servers["web"].sni.clone().unwrap();
    assert_eq!(sni.read_timeout, Duration::from_secs(2));
    assert_eq!(sni.hostname_matching_strategy, HostnameMatching::Exact);
    assert_eq!(
        sni.unexpected_hostname_strategy,
        UnexpectedHostname::Default
    );
    let text = format!(
        "{}[servers.web.sni]\nread_timeout = \"0\"\nhostname_matching_strategy = \"regex\"\nunexpected_hostname_strategy = \"drop\"\n",
        server("")
    );
    let e = errors(&text);
    assert_has(
        &e,
        "servers.web.sni.read_timeout: \"0\" must be greater than 0",
    );
    assert_has(
        &e,
        "servers.web.sni.hostname_matching_strategy: \"regex\" is not one of: exact, regexp (did you mean \"regexp\"?)",
    );
    assert_has(
        &e,
        "servers.web.sni.unexpected_hostname_strategy: \"drop\" is not one of: default, reject, any",
    );
}

#[test]
fn access_rules_are_passed_on() {
    let text = format!(
        "{}[servers.web.access]\ndefault = \"deny\"\nrules = []\n",
        server("")
    );
    let access = ok(&text).config.servers["web"].access.clone().unwrap();
    assert!(!access.default_allow);
    let text = format!("{}[servers.web.access]\ndefault = \"block\"\n", server(""));
    assert_has(
        &errors(&text),
        "servers.web.access.default: \"block\" is not one of: allow, deny",
    );
}

#[test]
fn type_errors_do_not_panic() {
    for text in [
        "servers = 1",
        "[servers.web]\nbind = 80",
        "[servers.web]\nmax_connections = -1",
        "[servers.web.discovery]\nstatic_list = \"a:1\"",
        "[servers.web.healthcheck]\nexpected_status = true",
        "[servers.web.healthcheck]\njitter = 300",
        "[[servers]]",
        "= 1",
    ] {
        let e = parse(text, Format::Toml).unwrap_err();
        assert!(!e.is_empty(), "{text}");
    }
    for text in [
        "[]",
        "null",
        "{\"servers\": []}",
        "{\"servers\": {\"a\": null}}",
        "{",
    ] {
        assert!(parse(text, Format::Json).is_err(), "{text}");
    }
}

#[test]
fn sections_must_be_tables() {
    let e = errors("api = [true, \":80\"]\n");
    assert_eq!(e, ["api: expected a table (object), found an array"]);
    let e = parse("[]", Format::Json).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "expected a table (object), found an array"
    );
    let e = parse(
        r#"{"servers": {"w": {"discovery": ["static"]}}}"#,
        Format::Json,
    )
    .unwrap_err();
    assert_eq!(e[0].path, "servers.w.discovery");
}

#[test]
fn api_state_file_keys() {
    let l = ok("[api]\nstate_file = \"/var/lib/betwixt/state\"\nstate_max_age = \"1m\"\n");
    assert_eq!(
        l.config.api.state_file.as_deref(),
        Some(std::path::Path::new("/var/lib/betwixt/state"))
    );
    assert_eq!(l.config.api.state_max_age, Duration::from_secs(60));
    let l = ok("[api]\n");
    assert_eq!(
        (l.config.api.state_file, l.config.api.state_max_age),
        (None, Duration::from_secs(300))
    );
    assert_has(
        &errors("[api]\nstate_max_age = \"soon\"\n"),
        "api.state_max_age: ",
    );
    assert_has(
        &errors("[api]\nstate_fil = \"x\"\n"),
        "api.state_fil: unknown key",
    );
}

#[test]
fn max_exec_checks_default_range_and_value() {
    assert_eq!(ok(&server("")).config.max_exec_checks, 4);
    let l = ok(&format!("[defaults]\nmax_exec_checks = 2\n{}", server("")));
    assert_eq!(l.config.max_exec_checks, 2);
    let e = errors(&format!("[defaults]\nmax_exec_checks = 0\n{}", server("")));
    assert_has(&e, "defaults.max_exec_checks: must be 1-1024");
    let e = errors(&format!(
        "[defaults]\nmax_exec_checks = 5000\n{}",
        server("")
    ));
    assert_has(&e, "defaults.max_exec_checks: must be 1-1024");
    // Only in [defaults]: it is one limit for the whole process.
    let e = errors(&server("max_exec_checks = 2"));
    assert_has(&e, "servers.web.max_exec_checks: unknown key");
}

#[test]
fn sni_regexps_of_static_backends_must_compile() {
    let text = "[servers.web]\nbind = \":8080\"\n[servers.web.sni]\nhostname_matching_strategy = \"regexp\"\n\
         [servers.web.discovery]\nkind = \"static\"\n\
         static_list = [\"10.0.0.1:80 sni=ok\\\\.test\", \"10.0.0.2:80 sni=(broken\", \"10.0.0.3:80\"]\n";
    let e = errors(text);
    assert_has(
        &e,
        "servers.web.discovery.static_list[1]: sni=\"(broken\" is not a valid regexp (hostname_matching_strategy = \"regexp\"): ",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    // The same values are plain names with exact matching.
    ok(&text.replace("hostname_matching_strategy = \"regexp\"", ""));
}

/// A server section `name` bound to `bind` with `protocol`.
fn bound(name: &str, bind: &str, protocol: &str) -> String {
    format!(
        "[servers.{name}]\nbind = \"{bind}\"\nprotocol = \"{protocol}\"\nclient_idle_timeout = \"1m\"\n\
         [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [\"10.0.0.1:80\"]\n"
    )
}

#[test]
fn overlapping_binds_are_errors() {
    let both = |a: &str, b: &str| format!("{}{}", bound("a", a, "tcp"), bound("b", b, "tcp"));
    let e = errors(&both("127.0.0.1:8080", "127.0.0.1:8080"));
    assert_eq!(
        e,
        [
            "servers.b.bind: 127.0.0.1:8080 overlaps servers.a.bind (127.0.0.1:8080, tcp): both cannot listen"
        ]
    );
    assert_has(
        &errors(&both("0.0.0.0:8080", "127.0.0.1:8080")),
        "servers.b.bind: ",
    );
    assert_has(
        &errors(&both("[::]:8080", "127.0.0.1:8080")),
        "servers.b.bind: ",
    );
    // ":PORT" is 0.0.0.0 (IPv4 only), as in gobetween.
    ok(&both(":8080", "[::1]:8080"));
    ok(&both("127.0.0.1:8080", "127.0.0.2:8080"));
    ok(&both("0.0.0.0:8080", "[::1]:8080"));
    // TCP and UDP ports are separate.
    ok(&format!(
        "{}{}",
        bound("a", ":53", "tcp"),
        bound("b", ":53", "udp")
    ));
    let e = errors(&format!(
        "{}{}",
        bound("a", ":53", "udp"),
        bound("b", "127.0.0.1:53", "udp")
    ));
    assert_has(&e, "servers.b.bind: 127.0.0.1:53 overlaps servers.a.bind");
}

#[test]
fn a_server_on_the_api_or_metrics_port_is_an_error() {
    let api = "[api]\nenabled = true\nbind = \"127.0.0.1:8888\"\n";
    let e = errors(&format!("{api}{}", bound("a", ":8888", "tcp")));
    assert_has(
        &e,
        "servers.a.bind: 0.0.0.0:8888 overlaps api.bind (127.0.0.1:8888, tcp)",
    );
    let metrics = "[metrics]\nenabled = true\nbind = \":9284\"\n";
    let e = errors(&format!("{metrics}{}", bound("a", "127.0.0.1:9284", "tcp")));
    assert_has(&e, "servers.a.bind: 127.0.0.1:9284 overlaps metrics.bind");
    // A disabled API holds no port.
    ok(&format!(
        "[api]\nenabled = false\n{}",
        bound("a", "127.0.0.1:8888", "tcp")
    ));
}

#[test]
fn server_names_are_non_empty_without_control_characters() {
    let named = |name: &str| {
        server("")
            .replace("[servers.web]", &format!("[servers.{name}]"))
            .replace("[servers.web.", &format!("[servers.{name}."))
    };
    let e = errors(&named("\"a\\nb\""));
    assert_has(&e, "servers.\"a\\nb\": a server name must be non-empty");
    let e = errors(&named("\"\""));
    assert_has(&e, "servers.\"\": a server name must be non-empty");
    ok(&named("\"web 1\""));
    ok(&named("\"wéb\""));
}

#[test]
fn healthd_typos_get_a_suggestion() {
    let e = errors(
        "[healthd]\nlistenr = \"127.0.0.1:5500\"\n[healthd.checks.db]\nadress = \"127.0.0.1:5432\"\n\
         [healthd.checks.db.healthcheck]\nkind = \"ping\"\ninteval = \"1s\"\n",
    );
    for want in [
        "healthd.listenr: unknown key (did you mean \"listener\"?)",
        "healthd.checks.db.adress: unknown key (did you mean \"address\"?)",
        "healthd.checks.db.healthcheck.inteval: unknown key (did you mean \"interval\"?)",
    ] {
        assert!(e.iter().any(|l| l == want), "{want} not in {e:#?}");
    }
}

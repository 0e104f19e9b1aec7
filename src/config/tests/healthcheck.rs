//! `[servers.NAME.healthcheck]` rules.

use std::time::Duration;

use super::*;

fn hc(body: &str) -> String {
    format!("{}[servers.web.healthcheck]\n{body}\n", server(""))
}

fn check(body: &str) -> Healthcheck {
    ok(&hc(body)).config.servers["web"].healthcheck.clone()
}

#[test]
fn absent_is_none() {
    assert_eq!(
        ok(&server("")).config.servers["web"].healthcheck.kind,
        "none"
    );
    let h = check("kind = \"none\"");
    assert_eq!(h, Healthcheck::none());
}

#[test]
fn common_keys() {
    let h = check(
        "kind = \"ping\"\ninterval = \"5s\"\ntimeout = \"1s\"\nport = 9000\nfails = 3\npasses = 2\n\
         initial_status = \"unhealthy\"\nfast_interval = \"1s\"\ndown_interval = \"30s\"\njitter = 10\n\
         score_window = 20\non_down = \"close\"",
    );
    assert_eq!(h.interval, Some(Duration::from_secs(5)));
    assert_eq!(h.timeout, Some(Duration::from_secs(1)));
    assert_eq!(h.port, Some(9000));
    assert_eq!((h.fails, h.passes), (3, 2));
    assert!(!h.initial_healthy);
    assert_eq!(h.fast_interval, Some(Duration::from_secs(1)));
    assert_eq!(h.down_interval, Some(Duration::from_secs(30)));
    assert_eq!(
        (h.jitter, h.score_window, h.on_down),
        (10, 20, OnDown::Close)
    );
    let h = check("kind = \"ping\"\ninterval = \"5s\"\nfails = -1\npasses = 0\ntimeout = \"0\"");
    assert_eq!((h.fails, h.passes, h.timeout), (1, 1, None));
    assert!(h.initial_healthy);
}

#[test]
fn common_key_errors() {
    let e = errors(&hc(
        "kind = \"ping\"\ntimeout = \"1\"\ninitial_status = \"up\"\njitter = 101\nport = 0\non_down = \"drop\"\nfast_interval = \"0\"\nscore_window = 1001",
    ));
    assert_has(&e, "servers.web.healthcheck.interval: required");
    assert!(e.contains(
        &"servers.web.healthcheck.timeout: \"1\" has no unit (write \"1s\" or \"1ms\")".to_string()
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.initial_status: \"up\" is not one of: healthy, unhealthy",
    );
    assert_has(&e, "servers.web.healthcheck.jitter: a percentage");
    assert_has(
        &e,
        "servers.web.healthcheck.score_window: at most 1000 results (0 = off)",
    );
    assert_has(&e, "servers.web.healthcheck.port: must be 1-65535");
    assert_has(
        &e,
        "servers.web.healthcheck.on_down: \"drop\" is not one of: keep, close",
    );
    assert_has(
        &e,
        "servers.web.healthcheck.fast_interval: \"0\" must be greater than 0",
    );
    assert_has(
        &errors(&hc("kind = \"ping\"\ninterval = \"0\"")),
        "servers.web.healthcheck.interval: \"0\" must be greater than 0",
    );
    assert_has(
        &errors(&hc("kind = \"ping\"\ninterval = \"1s\"\ntimeout = \"2s\"")),
        "servers.web.healthcheck.timeout: must be shorter than interval",
    );
    assert_has(
        &errors(&hc("interval = \"1s\"")),
        "servers.web.healthcheck.kind: required",
    );
    assert_has(
        &errors(&hc("kind = \"tcp\"\ninterval = \"1s\"")),
        "servers.web.healthcheck.kind: \"tcp\" is not one of: none, ping, probe",
    );
}

#[test]
fn ping_is_rejected_for_udp() {
    let text = format!(
        "{}[servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"1s\"\n",
        server("protocol = \"udp\"\nclient_idle_timeout = \"1m\"")
    );
    assert_has(
        &errors(&text),
        "servers.web.healthcheck.kind: \"ping\" (TCP connect) cannot check a udp server",
    );
}

#[test]
fn probe_starts_with() {
    let h = check(
        "kind = \"probe\"\ninterval = \"2s\"\nprobe_protocol = \"tcp\"\nprobe_send = 'PING\\r\\n'\nprobe_recv = '+PONG'",
    );
    let Check::Probe(p) = h.check else { panic!() };
    assert_eq!(p.send, b"PING\r\n");
    assert_eq!(p.expect, ProbeExpect::StartsWith(b"+PONG".to_vec()));
    assert_eq!(
        (p.read_len, p.protocol, p.tls_insecure),
        (5, ProbeProtocol::Tcp, false)
    );
}

#[test]
fn probe_regexp() {
    let h = check(
        "kind = \"probe\"\ninterval = \"2s\"\nprobe_protocol = \"tls\"\nprobe_send = 'x'\nprobe_recv = '^OK \\d+'\n\
         probe_strategy = \"regexp\"\nprobe_recv_len = 16\nprobe_tls_insecure = true",
    );
    let Check::Probe(p) = h.check else { panic!() };
    let ProbeExpect::Regexp(re) = &p.expect else {
        panic!("{:?}", p.expect)
    };
    assert_eq!(re.0.as_str(), "^OK \\d+");
    assert_eq!((p.read_len, p.tls_insecure), (16, true));
}

#[test]
fn probe_errors() {
    let e = errors(&hc("kind = \"probe\"\ninterval = \"2s\""));
    assert_has(
        &e,
        "servers.web.healthcheck.probe_protocol: required for kind \"probe\"",
    );
    assert_has(&e, "servers.web.healthcheck.probe_send: required");
    assert_has(&e, "servers.web.healthcheck.probe_recv: required");
    let e = errors(&hc(
        "kind = \"probe\"\ninterval = \"2s\"\nprobe_protocol = \"sctp\"\nprobe_send = \"a\\nb\"\nprobe_recv = '\\q'\nprobe_recv_len = 3",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.probe_protocol: \"sctp\" is not one of: tcp, udp, tls",
    );
    assert_has(&e, "servers.web.healthcheck.probe_send: raw newline");
    assert_has(
        &e,
        "servers.web.healthcheck.probe_recv: unknown escape `\\q`",
    );
    assert_has(&e, "servers.web.healthcheck.probe_recv_len: must be 0");
    let e = errors(&hc(
        "kind = \"probe\"\ninterval = \"2s\"\nprobe_protocol = \"tcp\"\nprobe_send = 'a'\nprobe_recv = '('\nprobe_strategy = \"regexp\"",
    ));
    assert_has(&e, "servers.web.healthcheck.probe_recv_len: required (> 0)");
    assert_has(&e, "servers.web.healthcheck.probe_recv: does not compile");
    let e = errors(&hc(
        "kind = \"probe\"\ninterval = \"2s\"\nprobe_protocol = \"tcp\"\nprobe_send = 'a'\nprobe_recv = 'b'\nprobe_strategy = \"prefix\"",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.probe_strategy: \"prefix\" is not one of: starts_with, regexp",
    );
}

#[test]
fn exec_and_script() {
    let h = check(
        "kind = \"exec\"\ninterval = \"2s\"\nexec_command = \"/check.sh\"\nexec_expected_positive_output = \"1\"",
    );
    assert_eq!(
        h.check,
        Check::Exec {
            command: "/check.sh".into(),
            positive_output: Some("1".into()),
            negative_output: None
        }
    );
    assert_eq!(h.params["exec_command"], "/check.sh");
    assert_has(
        &errors(&hc("kind = \"exec\"\ninterval = \"2s\"")),
        "servers.web.healthcheck.exec_command: required",
    );
    let h = check("kind = \"script\"\ninterval = \"2s\"\nscript_content = \"exit 0\"");
    assert_eq!(h.check, Check::Script(Script::Content("exit 0".into())));
    let e = errors(&hc(
        "kind = \"script\"\ninterval = \"2s\"\nscript_content = \"a\"\nscript_path = \"/b\"",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.script_content: set only one of",
    );
    assert_has(
        &errors(&hc("kind = \"script\"\ninterval = \"2s\"")),
        "servers.web.healthcheck: kind \"script\" needs",
    );
}

#[test]
fn http_check() {
    let h = check("kind = \"http\"\ninterval = \"2s\"");
    let Check::Http(http) = h.check else { panic!() };
    assert_eq!((http.path.as_str(), http.method.as_str()), ("/", "GET"));
    assert_eq!(http.expected_status, [(200, 399)]);
    let h = check(
        "kind = \"http\"\ninterval = \"2s\"\npath = \"/health\"\nmethod = \"head\"\nhost = \"a.example\"\n\
         tls = true\ninsecure_skip_verify = true\nexpected_status = [200, \"300-302\"]\ncontains = \"ok\"\n\
         [servers.web.healthcheck.headers]\nX-Probe = \"1\"",
    );
    let Check::Http(http) = h.check else { panic!() };
    assert_eq!(http.method, "HEAD");
    assert_eq!(http.expected_status, [(200, 200), (300, 302)]);
    assert_eq!(http.headers["X-Probe"], "1");
    assert!(http.tls && http.insecure_skip_verify);
    assert_eq!(http.contains.as_deref(), Some("ok"));
    assert_eq!(h.params["headers"], "X-Probe=1");
    let Check::Http(http) = check("kind = \"http\"\ninterval = \"2s\"\nexpected_status = 0").check
    else {
        panic!()
    };
    assert!(http.expected_status.is_empty());
    let Check::Http(http) =
        check("kind = \"http\"\ninterval = \"2s\"\nexpected_status = \"204\"").check
    else {
        panic!()
    };
    assert_eq!(http.expected_status, [(204, 204)]);
}

#[test]
fn http_errors() {
    let e = errors(&hc(
        "kind = \"http\"\ninterval = \"2s\"\npath = \"health\"\nmethod = \"GE T\"\nexpected_status = \"399-200\"\n\
         [servers.web.healthcheck.headers]\n\"Bad Header\" = \"x\"",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.path: \"health\" must start with \"/\"",
    );
    assert_has(
        &e,
        "servers.web.healthcheck.method: \"GE T\" is not an HTTP method",
    );
    assert_has(
        &e,
        "servers.web.healthcheck.expected_status: range 399-200 is backwards",
    );
    assert_has(
        &e,
        "servers.web.healthcheck.headers: bad header \"Bad Header\"",
    );
    let e = errors(&hc(
        "kind = \"http\"\ninterval = \"2s\"\nexpected_status = [700]",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.expected_status: \"700\" is not an HTTP status",
    );
}

#[test]
fn icmp_and_webhook() {
    assert_eq!(
        check("kind = \"icmp\"\ninterval = \"2s\"").check,
        Check::Icmp { count: 3 }
    );
    assert_has(
        &errors(&hc("kind = \"icmp\"\ninterval = \"2s\"\nicmp_count = 0")),
        "servers.web.healthcheck.icmp_count: must be 1-100",
    );
    let h = check("kind = \"webhook\"\ninterval = \"2s\"\nwebhook_url = \"https://h/x\"");
    assert_eq!(
        h.check,
        Check::Webhook {
            url: "https://h/x".into(),
            method: WebhookMethod::Post
        }
    );
    let e = errors(&hc(
        "kind = \"webhook\"\ninterval = \"2s\"\nwebhook_url = \"h/x\"\nwebhook_method = \"PUT\"",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.webhook_url: \"h/x\": expected an http:// or https:// URL",
    );
    assert_has(
        &e,
        "servers.web.healthcheck.webhook_method: \"PUT\" is not one of: POST, GET",
    );
}

#[test]
fn webhook_url_is_checked_at_load_as_the_check_will_read_it() {
    let e = errors(&hc(
        "kind = \"webhook\"\ninterval = \"2s\"\nwebhook_url = \"http://alice:S3CRET@127.0.0.1/hook\"",
    ));
    assert_has(
        &e,
        "servers.web.healthcheck.webhook_url: user info (user:password@) is not supported",
    );
    assert!(
        !e.iter().any(|m| m.contains("S3CRET")),
        "the password is echoed: {e:?}"
    );
    assert_has(
        &errors(&hc(
            "kind = \"webhook\"\ninterval = \"2s\"\nwebhook_url = \"http://127.0.0.1:99999/\"",
        )),
        "servers.web.healthcheck.webhook_url: \"http://127.0.0.1:99999/\": bad port \"99999\"",
    );
}

#[test]
fn keys_of_other_kinds_warn() {
    let l = ok(&hc(
        "kind = \"ping\"\ninterval = \"1s\"\nprobe_send = 'x'\nexec_timeout_duration = \"1s\"",
    ));
    assert_warned(
        &l,
        "servers.web.healthcheck.probe_send: ignored for kind \"ping\"",
    );
    assert_warned(
        &l,
        "servers.web.healthcheck.exec_timeout_duration: obsolete gobetween key",
    );
    let l = ok(&hc("kind = \"none\"\ninterval = \"1s\""));
    assert_warned(
        &l,
        "servers.web.healthcheck.interval: ignored for kind \"none\"",
    );
}

#[test]
fn skipping_certificate_checks_is_warned() {
    let base = "servers.web.healthcheck";
    let l = ok(&hc(
        "kind = \"http\"\ninterval = \"2s\"\ntls = true\ninsecure_skip_verify = true",
    ));
    assert_warned(
        &l,
        &format!("{base}.insecure_skip_verify: backend certificates are not verified"),
    );
    let l = ok(&hc(
        "kind = \"http\"\ninterval = \"2s\"\ninsecure_skip_verify = true",
    ));
    assert_warned(
        &l,
        &format!("{base}.insecure_skip_verify: ignored unless tls = true"),
    );
    let probe = "kind = \"probe\"\ninterval = \"2s\"\nprobe_send = \"x\"\nprobe_recv = \"y\"\nprobe_tls_insecure = true";
    let l = ok(&hc(&format!("{probe}\nprobe_protocol = \"tls\"")));
    assert_warned(
        &l,
        &format!("{base}.probe_tls_insecure: backend certificates are not verified"),
    );
    let l = ok(&hc(&format!("{probe}\nprobe_protocol = \"tcp\"")));
    assert_warned(&l, &format!("{base}.probe_tls_insecure: ignored unless"));
    let l = ok(&hc("kind = \"http\"\ninterval = \"2s\"\ntls = true"));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn a_unicode_property_class_says_which_build_has_it() {
    let text = server(
        "[servers.web.healthcheck]\nkind = \"probe\"\ninterval = \"1s\"\n\
         probe_protocol = \"tcp\"\nprobe_send = \"x\"\nprobe_strategy = \"regexp\"\n\
         probe_recv_len = 10\nprobe_recv = '\\pL+'\n",
    );
    if cfg!(feature = "regex-unicode") {
        ok(&text);
        return;
    }
    let e = errors(&text);
    assert_has(&e, "servers.web.healthcheck.probe_recv: does not compile");
    assert!(e[0].contains("Cargo feature \"regex-unicode\""), "{e:#?}");
    // Perl classes and case folding are Unicode-aware in every build.
    let ok = ok(&server(
        "[servers.web.healthcheck]\nkind = \"probe\"\ninterval = \"1s\"\n\
         probe_protocol = \"tcp\"\nprobe_send = \"x\"\nprobe_strategy = \"regexp\"\n\
         probe_recv_len = 10\nprobe_recv = '\\d+\\w\\s(?i)é'\n",
    ));
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
}

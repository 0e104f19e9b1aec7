//! Tests of [`super`]: which values are secrets, and how they are hidden.

use super::*;

#[test]
fn urls_keep_their_shape_without_secrets() {
    let cases = [
        (
            "http://lb:p%40ss@127.0.0.1:9/x?token=T&a=1#f",
            "http://lb:<redacted>@127.0.0.1:9/x?token=<redacted>&a=<redacted>#f",
        ),
        ("https://TOKEN@h/x", "https://<redacted>@h/x"),
        ("http://h/x?SECRET", "http://h/x?<redacted>"),
        ("/health?key=K", "/health?key=<redacted>"),
        ("http://h/a@b", "http://h/a@b"),
        ("127.0.0.1:8500", "127.0.0.1:8500"),
        ("unix:///run/docker.sock", "unix:///run/docker.sock"),
    ];
    for (url, want) in cases {
        assert_eq!(mask_url(url), want, "{url}");
    }
    assert_eq!(
        url_for_logs("ftp://u:S@h/x?token=Q#f"),
        "ftp://h/x",
        "user info, query and fragment go"
    );
    assert_eq!(url_for_logs("http://h:1/p"), "http://h:1/p");
}

#[test]
fn arguments_that_name_a_secret_hide_their_value() {
    let args: Vec<String> = [
        "/bin/list",
        "--token",
        "T1",
        "--api-key=T2",
        "PASSWORD=T3",
        "http://u:T4@h/?q=T5",
        "--verbose",
        "plain",
    ]
    .map(String::from)
    .to_vec();
    let shown = mask_args(&args).join(" ");
    assert_eq!(
        shown,
        "/bin/list --token <redacted> --api-key=<redacted> PASSWORD=<redacted> \
         http://u:<redacted>@h/?q=<redacted> --verbose plain"
    );
    let sh = [
        "/bin/sh",
        "-c",
        "curl -H 'Authorization: Bearer T6' h",
        "sh",
        "-c",
    ];
    let shown = mask_args(&sh.map(String::from));
    assert_eq!(shown, ["/bin/sh", "-c", "<redacted>", "sh", "-c"]);
    let not_sh = ["/usr/bin/tool", "-c", "/etc/tool.conf"].map(String::from);
    assert_eq!(mask_args(&not_sh), not_sh);
}

#[test]
fn well_known_password_options_and_headers_are_hidden() {
    let shown = |args: &[&str]| {
        mask_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).join(" ")
    };
    assert_eq!(
        shown(&["/usr/bin/mysql", "-uroot", "-pS1", "-h", "127.0.0.1", "-p"]),
        "/usr/bin/mysql -uroot -p<redacted> -h 127.0.0.1 -p"
    );
    assert_eq!(
        shown(&["redis-cli", "-a", "S2", "ping"]),
        "redis-cli -a <redacted> ping"
    );
    assert_eq!(
        shown(&[
            "curl",
            "-u",
            "bob:S3",
            "--user=ann:S4",
            "-H",
            "X-Auth-Token: S5",
            "-H",
            "Accept: text/plain"
        ]),
        "curl -u bob:<redacted> --user=ann:<redacted> -H X-Auth-Token: <redacted> -H Accept: text/plain"
    );
    assert_eq!(
        shown(&["check", "Authorization: Bearer S6"]),
        "check Authorization: <redacted>"
    );
    // A host and port is no header.
    assert_eq!(
        shown(&["check", "auth.test:443", "auth-1:443"]),
        "check auth.test:443 auth-1:443"
    );
    // Other programs keep these options as they are.
    assert_eq!(
        shown(&["/bin/tool", "-pfile", "-a", "x", "-u", "a:b"]),
        "/bin/tool -pfile -a x -u a:b"
    );
}

#[test]
fn type_errors_of_secret_keys_do_not_quote_the_value() {
    let m = "invalid type: integer `123456`, expected a string";
    assert_eq!(
        scrub_message("servers.w.discovery.consul_acl_token", m),
        "invalid type: integer <redacted>, expected a string"
    );
    assert_eq!(scrub_message("servers.w.max_connections", m), m);
    assert!(is_secret_key("servers.w.healthcheck.headers.X-Token"));
}

fn server(json: Value) -> RawServer {
    serde_json::from_value(json).unwrap()
}

#[test]
fn restore_puts_back_only_unchanged_marks() {
    let current = server(serde_json::json!({
        "discovery": {"kind": "exec", "exec_command": ["/bin/l", "--token", "T1"]},
        "healthcheck": {"kind": "webhook", "webhook_url": "http://h/x?token=T2",
                        "headers": {"X-Token": "T3"}, "probe_send": "T4"}
    }));
    let mut shown = current.clone();
    redact_server(&mut shown);
    let mut incoming = serde_json::to_value(&shown).unwrap();
    // A changed URL that still holds the mark is not the current value.
    incoming["healthcheck"]["probe_send"] = "x<redacted>".into();
    restore(&mut incoming, &current);
    let text = incoming.to_string();
    for s in ["T1", "T2", "T3"] {
        assert!(text.contains(s), "{s}: {text}");
    }
    assert_eq!(incoming["healthcheck"]["probe_send"], "x<redacted>");
    let raw = RawConfig {
        servers: Some([("w".to_string(), server(incoming))].into()),
        ..Default::default()
    };
    let errors = marker_errors(&raw);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "servers.w.healthcheck.probe_send");
}

//! Bounded fuzzing of every discovery parser: the static line format,
//! json (with its key paths), plaintext (line format and regexp), SRV
//! answers, consul, docker and lxd JSON. Every answer gives a listing or
//! an error, never a panic; what comes out passes [`policy::canonical`].

use serde_json::{Value, json};

use super::*;
use crate::fuzz;

/// What a fetch hands to the daemon is sound: canonical hosts, real ports.
fn sound(specs: Vec<BackendSpec>) {
    let (specs, dropped, more) = policy::canonical(specs);
    for s in &specs {
        assert!(s.port > 0, "{s:?}");
        assert!(check_host(&s.host).is_ok(), "{s:?}");
    }
    assert!(dropped.len() <= policy::MAX_KEPT);
    for line in policy::to_log(&dropped, more) {
        assert!(line.chars().count() <= policy::MAX_CHARS + 1, "{line}");
    }
}

const LINES: &[&str] = &[
    "127.0.0.1:80",
    "host.example:8080 weight=5 priority=2 max_connections=10 sni=a.example",
    "[::1]:8002 weight=1 priority=2 max_connections=10 sni=a.example.com",
    "[fe80::1%eth0]:1 sni=x",
    "a_b-c.d.:65535 weight=4294967295",
];

#[test]
fn fuzz_static_lines() {
    fuzz::run_str("static line", 11, 1500, LINES, |t| {
        if let Ok(spec) = static_list::parse_line(t) {
            assert!(spec.port > 0 && check_host(&spec.host).is_ok(), "{spec:?}");
            // A parsed line prints back to a line that parses the same.
            let line = format!(
                "{} weight={} priority={} max_connections={}",
                spec.key(),
                spec.weight,
                spec.priority,
                spec.max_connections
            );
            let again = static_list::parse_line(&line).map(|s| s.key());
            assert_eq!(again, Ok(spec.key()), "{line}");
        }
    });
}

#[test]
fn fuzz_line_bodies() {
    let body = LINES.join("\n");
    let samples = [
        body.as_str(),
        "\u{feff}127.0.0.1:80\r\n\r\n10.0.0.2:80\n",
        "error page",
    ];
    let p = plaintext::Plaintext {
        endpoint: String::new(),
        pattern: None,
    };
    fuzz::run_str("line body", 12, 200, &samples, |t| {
        if let Ok(listing) = p.listing(t) {
            sound(listing.specs);
        }
    });
}

#[test]
fn fuzz_plaintext_regexp() {
    let re = regex::Regex::new(
        r"^(?P<host>[^,\s]+),(?P<port>\d+)(,(?P<weight>\d*))?(,(?P<priority>\d+))?(,(?P<max_connections>\d+))?(,(?P<sni>\S+))?$",
    )
    .expect("regexp");
    let p = plaintext::Plaintext {
        endpoint: String::new(),
        pattern: Some(re),
    };
    let samples = [
        "10.0.0.1,80,3,1,100,a.example\n[::1],443\n",
        "x,65535,4294967295,0,0,s\n",
    ];
    fuzz::run_str("plaintext regexp", 13, 150, &samples, |t| {
        if let Ok(listing) = p.listing(t) {
            sound(listing.specs);
        }
    });
}

fn json_kind(host: &str, port: &str) -> json::Json {
    json::Json {
        endpoint: String::new(),
        host: host.into(),
        port: port.into(),
        weight: "weight".into(),
        priority: "meta.priority".into(),
        sni: "tags[0]".into(),
        max_connections: ".limits[1].max".into(),
    }
}

const JSON_BODY: &str = r#"[
 {"host": "127.0.0.1", "port": 80, "weight": 2, "meta": {"priority": "3"},
  "tags": ["a.example"], "limits": [0, {"max": 10}]},
 {"host": "::1", "port": "8080", "weight": 1.5, "meta": null},
 {"addr": {"ip": ["198.18.0.1"]}, "p": [[443]]}
]"#;

#[test]
fn fuzz_json_bodies() {
    let kinds = [
        json_kind("host", "port"),
        json_kind("addr.ip[0]", "p[0][0]"),
    ];
    let mut i = 0;
    fuzz::run_str("json body", 14, 250, &[JSON_BODY, "[]", "{}"], |t| {
        i += 1;
        if let Ok(specs) = kinds[i % 2].parse(t.as_bytes()) {
            sound(specs);
        }
    });
    let docs: Vec<Value> = vec![serde_json::from_str(JSON_BODY).expect("sample")];
    fuzz::run_json("json values", 15, 250, &docs, |doc| {
        i += 1;
        if let Ok(specs) = kinds[i % 2].parse(doc.to_string().as_bytes()) {
            sound(specs);
        }
    });
}

#[test]
fn fuzz_json_paths() {
    let doc: Value = serde_json::from_str(JSON_BODY).expect("sample");
    let samples = [
        "a.b[1].c",
        ".x",
        "p[0][0]",
        "[3]",
        "a[18446744073709551615]",
        "a..b",
    ];
    fuzz::run_str("json path", 16, 500, &samples, |path| {
        let checked = json::check_path(path);
        let looked = json::lookup(&doc[0], path);
        assert_eq!(checked.is_ok(), looked.is_ok(), "{path:?}");
    });
}

fn dns_samples() -> Vec<Vec<u8>> {
    use simple_dns::rdata::{A, AAAA, RData, SRV};
    use simple_dns::{CLASS, Name, Packet, RCODE, ResourceRecord};
    let mut p = Packet::new_reply(7);
    *p.rcode_mut() = RCODE::NoError;
    let rr =
        |name: &'static str, d| ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, 60, d);
    for (target, port) in [("a.example.test", 80), ("b.example.test", 0), (".", 1)] {
        p.answers.push(rr(
            "_web._tcp.example.test",
            RData::SRV(SRV {
                priority: 1,
                weight: 65535,
                port,
                target: Name::new_unchecked(target),
            }),
        ));
    }
    p.additional_records.push(rr(
        "a.example.test",
        RData::A(A {
            address: 0x7f00_0001,
        }),
    ));
    p.additional_records
        .push(rr("b.example.test", RData::AAAA(AAAA { address: 1 })));
    let valid = p.build_bytes_vec_compressed().expect("reply");
    // A question whose name is a compression pointer to itself, and one
    // that points past the end.
    let mut looped = vec![0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1]);
    let mut past = looped.clone();
    past[12..14].copy_from_slice(&[0xff, 0xff]);
    // A header that announces 65535 answers in 12 bytes.
    let huge = vec![
        0, 7, 0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    vec![valid, looped, past, huge]
}

#[test]
fn fuzz_srv_answers() {
    let samples = dns_samples();
    let samples: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
    fuzz::run("srv answer", 17, 1500, &samples, |bytes| {
        if let Ok(answer) = srv::parse(7, bytes) {
            let specs = answer
                .srv
                .iter()
                // As `Srv::fetch`: port 0 and target "." are skipped.
                .filter(|r| r.port > 0 && !r.target.is_empty())
                .filter_map(|r| {
                    let ip = answer.addrs.get(&r.target).and_then(|a| srv::pick(a))?;
                    Some(srv::spec(r, ip))
                })
                .collect();
            sound(specs);
        }
    });
}

const CONSUL: &str = r#"[
 {"Node": {"Address": "198.18.0.9"}, "Service": {"Address": "", "Port": 80, "Tags": ["x", "sni=a.example"]}},
 {"Node": {"Address": "n"}, "Service": {"Address": "::1", "Port": 65536}},
 {"Service": {"Address": "127.0.0.1", "Port": 443, "Tags": null}}
]"#;

#[test]
fn fuzz_consul() {
    fuzz::run_str("consul", 18, 250, &[CONSUL, "[]"], |t| {
        if let Ok(l) = consul::parse(t.as_bytes()) {
            sound(l.specs);
        }
    });
    let docs = vec![serde_json::from_str(CONSUL).expect("sample")];
    fuzz::run_json("consul values", 19, 250, &docs, |doc| {
        if let Ok(l) = consul::parse(doc.to_string().as_bytes()) {
            sound(l.specs);
        }
    });
}

#[test]
fn fuzz_docker() {
    let endpoints = [
        "unix:///var/run/docker.sock",
        "tcp://[::1]:2376/x",
        "https://127.0.0.1:2376",
    ];
    fuzz::run_str("docker endpoint", 20, 400, &endpoints, |t| {
        let _ = docker::Endpoint::parse(t, false);
    });
    let kinds: Vec<docker::Docker> = endpoints
        .iter()
        .map(|e| docker::Docker {
            endpoint: docker::Endpoint::parse(e, false).expect("sample"),
            private_port: 80,
            label: None,
            host_env_var: None,
            tls: web::TlsFiles::default(),
        })
        .collect();
    let list = json!([
        {"Id": "a", "Names": ["/web"], "Labels": {"sni": "a.example"},
         "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0"},
                   {"PrivatePort": 80, "PublicPort": 8081, "IP": "198.18.0.2"},
                   {"PrivatePort": 80, "PublicPort": 70000, "IP": "::"}]},
        {"Id": "b", "Names": [], "Ports": [{"PrivatePort": 81, "PublicPort": 1}]}
    ]);
    let inspect = json!({"Config": {"Env": ["HOST=198.18.0.3", "X", "HOST"]}});
    let mut i = 0;
    fuzz::run_json("docker values", 21, 300, &[list, inspect], |doc| {
        i += 1;
        let kind = &kinds[i % kinds.len()];
        let text = doc.to_string();
        let containers = match kind.containers(text.as_bytes()) {
            Ok(list) => list,
            Err(_) => vec![kind.container(doc)],
        };
        let env = docker::env_value(doc, "HOST");
        let envs = vec![env; containers.len()];
        sound(kind.parse(&containers, &envs).specs);
    });
}

#[test]
fn fuzz_lxd() {
    let addresses = [
        "unix:",
        "unix:/var/lib/lxd/unix.socket",
        "https://127.0.0.1:8443/",
    ];
    fuzz::run_str("lxd address", 22, 400, &addresses, |t| {
        let _ = lxd::Address::parse(t, "/etc/lxd", false);
    });
    let kinds = [
        lxd::Lxd {
            address: lxd::Address::Unix("/x".into()),
            label: Some(("user.lb".into(), String::new())),
            port: Some(80),
            port_key: None,
            interface: "eth0".into(),
            interface_key: Some("user.if".into()),
            ipv6: false,
            sni_key: Some("user.sni".into()),
        },
        lxd::Lxd {
            address: lxd::Address::Unix("/x".into()),
            label: None,
            port: None,
            port_key: Some("user.port".into()),
            interface: "eth0".into(),
            interface_key: None,
            ipv6: true,
            sni_key: None,
        },
    ];
    let answer = json!({"type": "sync", "metadata": [
        {"name": "a", "status": "Running",
         "config": {"user.lb": "web", "user.sni": "a.test", "user.port": "8080", "user.if": "eth1"},
         "expanded_config": {"user.port": "65536"},
         "state": {"network": {"eth0": {"addresses": [
            {"family": "inet6", "address": "fe80::1", "scope": "link"},
            {"family": "inet", "address": "198.18.5.10", "scope": "global"},
            {"family": "inet6", "address": "2001:db8::10"}]},
            "eth1": {"addresses": [{"family": "inet", "address": "x y"}]}}}},
        {"name": "b", "status": "Stopped", "state": null}]});
    let error = json!({"type": "error", "error": "not authorized"});
    let mut i = 0;
    fuzz::run_json("lxd values", 23, 300, &[answer, error], |doc| {
        i += 1;
        if let Ok(l) = kinds[i % 2].parse(doc.to_string().as_bytes()) {
            sound(l.specs);
        }
    });
}

#[test]
fn fuzz_url_redaction() {
    // Endpoints come from the config, `Location` headers from any server:
    // user info and queries never reach a log, whatever the bytes.
    let samples = [
        "http://alice:S3CRET@127.0.0.1:8500/v1/kv?token=T0KEN#x",
        "https://b%40b:p%3Aw@[::1]/",
        "h@x://@@:@/?",
        "/relative?secret=1",
    ];
    fuzz::run_str("url redaction", 24, 500, &samples, |url| {
        // What the config accepts is logged redacted; what it refuses is
        // named in an error without its secrets.
        match crate::http::Url::parse(&web::user_info(url).0) {
            Ok(_) => {
                // No user info and no query left in what is logged.
                let shown = web::redact(url);
                let no_info = web::user_info(&shown).1.is_none();
                assert!(no_info && !shown.contains('?'), "logged {shown:?}");
                // The dump masks the password.
                let masked = crate::config::secrets::mask_url(url);
                if let (_, Some((_, password))) = web::user_info(&masked) {
                    assert!(!password.contains("S3CRET"), "dumped {masked:?}");
                }
            }
            // (Only a password: "S3CRET" without an `@` is a port or a path.)
            Err(e)
                if url
                    .split(['?', '#'])
                    .next()
                    .is_some_and(|u| u.contains("S3CRET@")) =>
            {
                assert!(!e.contains("S3CRET"), "error {e:?}");
            }
            Err(_) => {}
        }
    });
}

#[test]
fn a_refused_url_hides_its_password_and_query() {
    let urls = [
        "httpo//alice:S3CRET@127.0.0.1/",
        "http://alice:S3CRET:/x@127.0.0.1/",
        "http://h:99999/?token=T0KEN",
    ];
    for url in urls {
        let e = crate::http::Url::parse(&web::user_info(url).0).expect_err(url);
        assert!(!e.contains("S3CRET") && !e.contains("T0KEN"), "{e}");
    }
}

#[test]
fn millions_of_bad_entries_keep_a_bounded_list() {
    // A 16 MiB answer of bad lines (or consul entries) made a warning
    // string each: 0.9 GB for `x\n` lines. Now the first MAX_KEPT are kept
    // and the rest counted.
    let p = plaintext::Plaintext {
        endpoint: String::new(),
        pattern: None,
    };
    let text = "x\n".repeat(200_000);
    let e = p.listing(&text).expect_err("no backend");
    assert!(
        e.starts_with("no line is a backend (200000 skipped;"),
        "{e}"
    );
    let l = p.parse(&text);
    assert_eq!(
        (l.warnings.len(), l.more_warnings),
        (policy::MAX_KEPT, 200_000 - policy::MAX_KEPT)
    );
    let body = format!("[{}{{}}]", "{},".repeat(200_000));
    let l = consul::parse(body.as_bytes()).expect("entries");
    assert_eq!(
        (l.warnings.len(), l.more_warnings),
        (policy::MAX_KEPT, 200_001 - policy::MAX_KEPT)
    );
    let lines = vec!["127.0.0.1:80".to_string(); 50_000];
    let specs = lines
        .iter()
        .map(|l| static_list::parse_line(l).expect("line"))
        .collect();
    let (specs, dropped, more) = policy::canonical(specs);
    assert_eq!(
        (specs.len(), dropped.len(), more),
        (1, policy::MAX_KEPT, 49_999 - policy::MAX_KEPT)
    );
    let shown = policy::to_log(&dropped, more);
    assert_eq!(
        shown.last().map(String::as_str),
        Some("and 49989 more skipped")
    );
}

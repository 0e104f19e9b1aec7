//! The management API against the real binary, as a user with curl would.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::http::{json, request};
use common::*;

const AUTH: Option<&str> = Some("admin:hunter2");

fn api_config(api: u16, extra: &str, servers: &str) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n{extra}\n[api.basic_auth]\nlogin = \"admin\"\npassword = \"hunter2\"\n\n{servers}"
    )
}

fn server(name: &str, port: u16, backends: &[String], health: &str) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{list}]\n{health}\n"
    )
}

fn start(config: &str, api: u16, ports: &[u16]) -> Betwixt {
    let mut all = ports.to_vec();
    all.push(api);
    Betwixt::start(config, &all)
}

#[test]
fn read_endpoints_auth_and_redacted_dump() {
    let b1 = Backend::start("one");
    let (api, port) = (free_port(), free_port());
    let cfg = api_config(api, "", &server("web", port, &[b1.line()], ""));
    let bx = start(&cfg, api, &[port]);

    assert_eq!(request(api, "GET", "/ping", None, b""), (200, "OK".into()));
    assert_eq!(request(api, "GET", "/", None, b"").0, 401);
    assert_eq!(request(api, "GET", "/", Some("admin:wrong"), b"").0, 401);
    let (status, body) = request(api, "GET", "/", AUTH, b"");
    assert_eq!(status, 200);
    let info = json(&body);
    assert_eq!(info["pid"], bx.pid());
    assert_eq!(info["configuration"]["kind"], "file");

    for format in ["", "?format=toml", "?format=json"] {
        let (status, body) = request(api, "GET", &format!("/dump{format}"), AUTH, b"");
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("hunter2"), "password in dump: {body}");
        assert!(body.contains(&b1.line()), "{body}");
    }
    assert_eq!(request(api, "GET", "/dump?format=xml", AUTH, b"").0, 500);

    let servers = json(&request(api, "GET", "/servers", AUTH, b"").1);
    assert_eq!(servers["web"]["balance"], "weight");
    assert_eq!(servers["web"]["bind"], format!("127.0.0.1:{port}"));
    // Absent sub-sections are null, as gobetween prints them, and such an
    // object posts back as it is (gobetween clients GET, edit and POST).
    assert!(servers["web"]["sni"].is_null() && servers["web"].get("sni").is_some());
    let mut copy = servers["web"].clone();
    let copy_port = free_port();
    copy["bind"] = format!("127.0.0.1:{copy_port}").into();
    let body = copy.to_string();
    let (status, body) = request(api, "POST", "/servers/copy", AUTH, body.as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(who(copy_port), "one");
    assert_eq!(
        request(api, "GET", "/servers/nope", AUTH, b""),
        (200, "null\n".into())
    );

    assert_eq!(who(port), "one");
    let stats = json(&request(api, "GET", "/servers/web/stats", AUTH, b"").1);
    let backend = &stats["backends"][0];
    assert_eq!(backend["port"], b1.addr.port().to_string());
    assert!(wait_until(Duration::from_secs(5), || {
        let s = json(&request(api, "GET", "/servers/web/stats", AUTH, b"").1);
        s["backends"][0]["stats"]["total_connections"].as_u64() >= Some(1)
    }));
    assert_eq!(request(api, "GET", "/nothing", AUTH, b"").0, 404);
    assert!(!bx.logs().contains("hunter2"), "password in the log");
}

/// gobetween's documented body, then PUT and DELETE, while a long stream
/// flows through another server; rejected requests change nothing.
#[test]
fn servers_are_added_changed_and_removed_while_traffic_flows() {
    let b1 = Backend::start("one");
    let b2 = Backend::start("two");
    let (api, port, new_port) = (free_port(), free_port(), free_port());
    let cfg = api_config(api, "", &server("web", port, &[b1.line()], ""));
    let _bx = start(&cfg, api, &[port]);

    // A connection through "web" that stays open across every change.
    let mut flow = connect(port);
    assert_eq!(read_line(&mut flow), "one");

    let body = format!(
        r#"{{"bind":"127.0.0.1:{new_port}","healthcheck":{{"kind":"ping","interval":"2s","timeout":"1s"}},"discovery":{{"kind":"static","static_list":["{}"]}}}}"#,
        b2.line()
    );
    assert_eq!(
        request(api, "POST", "/servers/added", AUTH, body.as_bytes()),
        (200, "null\n".into())
    );
    assert_eq!(who(new_port), "two");
    let (status, msg) = request(api, "POST", "/servers/added", AUTH, body.as_bytes());
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("already exists"), "{msg}");

    // Rejections: bad JSON, unknown field, invalid value, busy bind, too big.
    let (status, msg) = request(api, "POST", "/servers/x", AUTH, b"{\"bind\":");
    assert_eq!(status, 400, "{msg}");
    let (status, msg) = request(
        api,
        "POST",
        "/servers/x",
        AUTH,
        body.replace("\"bind\"", "\"bnid\"").as_bytes(),
    );
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("servers.x.bnid"), "{msg}");
    let (status, msg) = request(api, "PUT", "/servers/added", AUTH, br#"{"bind":"127.0.0.1:1","balance":"fastest","discovery":{"kind":"static","static_list":["127.0.0.1:9"]}}"#);
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("servers.added.balance"), "{msg}");
    let busy = body.replace(&new_port.to_string(), &port.to_string());
    let (status, msg) = request(api, "POST", "/servers/x", AUTH, busy.as_bytes());
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("servers.x.bind"), "{msg}");
    let big = vec![b' '; 2 << 20];
    assert_eq!(request(api, "POST", "/servers/x", AUTH, &big).0, 413);
    assert_eq!(
        who(new_port),
        "two",
        "a rejected request changed a running server"
    );
    assert_eq!(request(api, "GET", "/servers/x", AUTH, b"").1, "null\n");

    // PUT in place: same listener, new backend list; the open flow survives.
    let mut held = connect(new_port);
    assert_eq!(read_line(&mut held), "two");
    let put = body.replace(&b2.line(), &b1.line());
    assert_eq!(
        request(api, "PUT", "/servers/added", AUTH, put.as_bytes()).0,
        200
    );
    assert_eq!(who(new_port), "one");
    assert_eq!(exchange(&mut held, b"still here\n"), b"still here\n");

    assert_eq!(
        request(api, "DELETE", "/servers/added", AUTH, b""),
        (200, "null\n".into())
    );
    assert!(wait_until(Duration::from_secs(5), || TcpStream::connect((
        "127.0.0.1",
        new_port
    ))
    .is_err()));
    assert_eq!(request(api, "DELETE", "/servers/added", AUTH, b"").0, 200);
    assert_eq!(
        exchange(&mut flow, b"ping\n"),
        b"ping\n",
        "traffic through web was disturbed"
    );
}

/// A backend that streams `total` bytes slowly to every client.
fn slow_download(total: usize, accepted: Arc<AtomicUsize>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            accepted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut s = s;
                let chunk = vec![7u8; total / 20];
                for _ in 0..20 {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    addr.to_string()
}

#[test]
fn drained_backend_finishes_its_download_and_gets_nothing_new() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let slow = slow_download(2_000_000, Arc::clone(&accepted));
    let other = Backend::start("other");
    let (api, port) = (free_port(), free_port());
    let cfg = api_config(
        api,
        "",
        &server("web", port, &[slow.clone(), other.line()], ""),
    );
    let _bx = start(&cfg, api, &[port]);
    // Find a connection that landed on the slow backend.
    let mut download = None;
    for _ in 0..30 {
        let before = accepted.load(Ordering::SeqCst);
        let mut c = connect(port);
        let mut first = [0u8; 1];
        c.read_exact(&mut first).unwrap();
        if accepted.load(Ordering::SeqCst) > before && first[0] == 7 {
            download = Some(c);
            break;
        }
    }
    let mut download = download.expect("no connection reached the slow backend");
    let path = format!("/servers/web/backends/{slow}/drain");
    let (status, body) = request(api, "POST", &path, AUTH, b"");
    assert_eq!(
        (status, json(&body)["admin"].clone()),
        (200, "drain".into())
    );
    let before = accepted.load(Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(who(port), "other");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before,
        "a drained backend got a new connection"
    );
    let mut rest = Vec::new();
    download.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len() + 1, 2_000_000, "the download did not complete");

    let stats = json(&request(api, "GET", "/servers/web/stats", AUTH, b"").1);
    let admins: Vec<String> = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["stats"]["admin"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(admins.contains(&"drain".to_string()), "{stats}");
    let path = format!("/servers/web/backends/{slow}/enable");
    assert_eq!(request(api, "POST", &path, AUTH, b"").0, 200);
    let path = format!("/servers/web/backends/{slow}/bogus");
    assert_eq!(request(api, "POST", &path, AUTH, b"").0, 404);
    assert_eq!(
        request(
            api,
            "POST",
            "/servers/web/backends/127.0.0.1:1/drain",
            AUTH,
            b""
        )
        .0,
        404
    );
}

#[test]
fn health_endpoints_metrics_and_state_file() {
    let up = Backend::start("up");
    let down = free_port();
    let (api, port, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let extra = format!("state_file = \"{}\"", state.display());
    let check =
        "[servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n";
    let servers = server(
        "web",
        port,
        &[up.line(), format!("127.0.0.1:{down}")],
        check,
    );
    let cfg = format!(
        "{}\n[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n",
        api_config(api, &extra, &servers)
    );
    let bx = start(&cfg, api, &[port, metrics]);

    let key = format!("127.0.0.1:{down}");
    let health_path = format!("/servers/web/backends/{key}/health");
    let health = || json(&request(api, "GET", &health_path, AUTH, b"").1);
    assert!(wait_until(Duration::from_secs(5), || {
        let h = health();
        h["state"] == "down" && h["history"].as_array().is_some_and(|a| !a.is_empty())
    }));
    let h = health();
    assert_eq!(h["history"][0]["cause"], "refused", "{h}");
    assert!(h["since"].as_str().is_some(), "{h}");

    let (status, body) = request(api, "GET", "/health", AUTH, b"");
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (200, "UP".into()),
        "{body}"
    );
    let path = format!("/servers/web/backends/{}/disable", up.line());
    assert_eq!(request(api, "POST", &path, AUTH, b"").0, 200);
    let (status, body) = request(api, "GET", "/health", AUTH, b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no electable backend"), "{body}");

    let (status, text) = request(metrics, "GET", "/metrics", None, b"");
    assert_eq!(status, 200);
    for line in [
        format!("betwixt_backend_up{{server=\"web\",backend=\"{key}\"}} 0"),
        format!("gobetween_backend_live{{server=\"web\",host=\"127.0.0.1\",port=\"{down}\"}} 0"),
        format!(
            "betwixt_backend_admin_state{{server=\"web\",backend=\"{}\",state=\"disabled\"}} 1",
            up.line()
        ),
        "# TYPE betwixt_health_check_duration_seconds histogram".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line}");
    }

    // The admin state and an API-made server survive a restart.
    let extra_port = free_port();
    let body = format!(
        r#"{{"bind":"127.0.0.1:{extra_port}","discovery":{{"kind":"static","static_list":["{}"]}}}}"#,
        up.line()
    );
    assert_eq!(
        request(api, "POST", "/servers/kept", AUTH, body.as_bytes()).0,
        200
    );
    assert!(wait_until(Duration::from_secs(5), || state.exists()));
    let mut bx = bx;
    bx.signal(libc::SIGTERM);
    bx.wait_exit(Duration::from_secs(10)).expect("exit");
    let config = std::fs::read_to_string(&bx.config).unwrap();
    let bx2 = start(&config, api, &[port, extra_port]);
    let stats = json(&request(api, "GET", "/servers/web/stats", AUTH, b"").1);
    assert!(
        stats.to_string().contains("\"admin\":\"disabled\""),
        "{stats}"
    );
    assert_eq!(who(extra_port), "up");

    // A corrupt state file is reported and ignored.
    let mut bx2 = bx2;
    bx2.signal(libc::SIGTERM);
    bx2.wait_exit(Duration::from_secs(10)).expect("exit");
    std::fs::write(&state, b"BTWX\x01\x10\x00").unwrap();
    let bx3 = start(&config, api, &[port]);
    assert!(bx3.logs().contains("ignoring"), "{}", bx3.logs());
}

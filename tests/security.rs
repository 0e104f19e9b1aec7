//! Secrets never reach logs, dumps, reports or error messages; a section
//! read from the API and sent back keeps its secrets; auth failures are 401
//! with a challenge; timed-out discovery commands die with their group.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::http::{json, request};
use common::*;

const AUTH: Option<&str> = Some("admin:S-API-1");
const WAIT: Duration = Duration::from_secs(15);

/// Every secret of [`secret_config`], and one the client sends.
const SECRETS: [&str; 12] = [
    "S-API-1",
    "S-HOOK-1",
    "S-HOOK-2",
    "S-JSON-1",
    "S-JSON-2",
    "S-ENV-1",
    "S-CONSUL-2",
    "S-EXEC-1",
    "S-PROBE-1",
    "S-SCRIPT-1",
    "S-PATH-1",
    "S-WRONG-1",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{s} in {what}:\n{text}");
    }
}

/// A webhook that answers 200 to requests carrying `token=S-HOOK-1` and
/// 403 to others; counts both.
struct Hook {
    port: u16,
    good: Arc<AtomicUsize>,
    bad: Arc<AtomicUsize>,
}

impl Hook {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (good, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (g, b) = (good.clone(), bad.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(&s);
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                // The rest of the head (and a small body) is not looked at.
                let ok = line.contains("token=S-HOOK-1");
                let counter = if ok { &g } else { &b };
                counter.fetch_add(1, Ordering::SeqCst);
                let status = if ok { "200 OK" } else { "403 Forbidden" };
                let _ = (&s).write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Hook { port, good, bad }
    }
}

fn section(name: &str, port: u16, discovery: &str, health: &str) -> String {
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\n{discovery}\n\
         [servers.{name}.healthcheck]\ninterval = \"300ms\"\ntimeout = \"250ms\"\n{health}\n"
    )
}

/// One server per kind of secret; `closed` is a port nothing listens on.
fn secret_config(api: u16, ports: &[u16], hook: u16, closed: u16, backend: &str) -> String {
    let fixed = format!("kind = \"static\"\nstatic_list = [\"{backend}\"]");
    let mut text = format!(
        "[logging]\nlevel = \"debug\"\n\n[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [api.basic_auth]\nlogin = \"admin\"\npassword = \"S-API-1\"\n\n"
    );
    text += &section(
        "web",
        ports[0],
        &fixed,
        &format!(
            "kind = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{hook}/hook?token=S-HOOK-1\""
        ),
    );
    text += &section(
        "down",
        ports[1],
        &fixed,
        &format!(
            "kind = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{closed}/hook?token=S-HOOK-2\""
        ),
    );
    text += &section(
        "j",
        ports[2],
        &format!(
            "kind = \"json\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n\
             json_endpoint = \"http://lb:S-JSON-1@127.0.0.1:{closed}/list?token=S-JSON-2\""
        ),
        "kind = \"ping\"",
    );
    text += &section(
        "h",
        ports[5],
        &fixed,
        "kind = \"http\"\npath = \"/health?key=S-PATH-1\"",
    );
    text += &section(
        "c",
        ports[3],
        &format!(
            "kind = \"consul\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n\
             consul_host = \"127.0.0.1:{closed}\"\nconsul_service_name = \"x\"\n\
             consul_acl_token = \"${{BX_SEC_TOKEN}}\"\nconsul_auth_username = \"u\"\n\
             consul_auth_password = \"S-CONSUL-2\""
        ),
        "kind = \"ping\"",
    );
    text += &section(
        "p",
        ports[6],
        &fixed,
        "kind = \"probe\"\nprobe_protocol = \"tcp\"\nprobe_send = \"AUTH S-PROBE-1\"\nprobe_recv = \"+OK\"",
    );
    text += &section(
        "e",
        ports[4],
        &format!(
            "kind = \"exec\"\ninterval = \"300ms\"\n\
             exec_command = [\"/bin/sh\", \"-c\", \"echo {backend}\", \"sh\", \"--token\", \"S-EXEC-1\"]"
        ),
        "kind = \"script\"\nscript_content = \"#!/bin/sh\\n# S-SCRIPT-1\\nexit 1\\n\"",
    );
    text
}

/// Status line and headers of a request with `auth` (`login:password`).
fn head_of(port: u16, auth: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let token = common::http::base64(auth.as_bytes());
    let req = format!(
        "GET /servers HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").next().unwrap_or("").to_string()
}

/// Everything a client or an operator can read.
fn everything(api: u16, bx: &Betwixt, backend: &str) -> Vec<(String, String)> {
    let mut out = vec![("log".to_string(), bx.logs())];
    let mut paths: Vec<String> = [
        "/dump",
        "/dump?format=json",
        "/servers",
        "/status",
        "/health",
        "/metrics",
    ]
    .map(String::from)
    .to_vec();
    for name in ["web", "down", "j", "c", "e", "h", "p"] {
        paths.push(format!("/servers/{name}"));
        paths.push(format!("/servers/{name}/stats"));
        paths.push(format!("/servers/{name}/backends/{backend}/health"));
    }
    for p in paths {
        let (status, body) = request(api, "GET", &p, AUTH, b"");
        assert!([200, 404, 503].contains(&status), "{p}: {status} {body}");
        out.push((p, body));
    }
    out
}

#[test]
fn secrets_stay_out_of_logs_dumps_reports_and_errors() {
    let hook = Hook::start();
    let b = Backend::start("b");
    let api = free_port();
    let ports: Vec<u16> = (0..7).map(|_| free_port()).collect();
    let closed = free_port();
    let cfg = secret_config(api, &ports, hook.port, closed, &b.line());
    let mut bx = Betwixt::spawn(&cfg, "betwixt.toml", &["-e"], |cmd| {
        cmd.env("BX_SEC_TOKEN", "S-ENV-1");
    });
    let mut binds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    binds.push(format!("http://127.0.0.1:{api}"));
    bx.wait_listening(&binds);

    // Every path that could echo a secret has run at least once.
    let ran = wait_until(WAIT, || {
        let logs = bx.logs();
        hook.good.load(Ordering::SeqCst) >= 2
            && ["(j)", "(c)"].iter().all(|n| {
                logs.lines()
                    .any(|l| l.contains(n) && l.contains("discovery failed"))
            })
            && logs.contains(&format!("backend {} is down", b.line()))
    });
    assert!(ran, "{}", bx.logs());
    assert!(
        wait_until(WAIT, || bx.logs().matches("is down").count() >= 4),
        "down, h (http), p (probe), e (script): {}",
        bx.logs()
    );
    assert_eq!(hook.bad.load(Ordering::SeqCst), 0, "the real token is sent");

    // A wrong password: 401 with a challenge, and never logged.
    let head = head_of(api, "admin:S-WRONG-1");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{head}"
    );
    for (what, text) in everything(api, &bx, &b.line()) {
        assert_clean(&what, &text);
    }
    let dump = request(api, "GET", "/dump", AUTH, b"").1;
    for shape in [
        "token=<redacted>",
        "http://lb:<redacted>@127.0.0.1",
        "/health?key=<redacted>",
        "\"--token\", \"<redacted>\"",
    ] {
        assert!(dump.contains(shape), "{shape} missing:\n{dump}");
    }

    // What a client reads, changed and sent back: the secret is kept.
    let mut web = json(&request(api, "GET", "/servers/web", AUTH, b"").1);
    assert_eq!(
        web["healthcheck"]["webhook_url"],
        format!("http://127.0.0.1:{}/hook?token=<redacted>", hook.port)
    );
    web["healthcheck"]["interval"] = "400ms".into();
    let (status, body) = request(api, "PUT", "/servers/web", AUTH, web.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    let before = hook.good.load(Ordering::SeqCst);
    assert!(
        wait_until(WAIT, || hook.good.load(Ordering::SeqCst) >= before + 3),
        "the new check calls the webhook with the kept token"
    );
    assert_eq!(
        hook.bad.load(Ordering::SeqCst),
        0,
        "the mark was never sent"
    );
    // A copy under a new name has no secret to keep: refused by name.
    web["bind"] = format!("127.0.0.1:{}", free_port()).into();
    let (status, body) = request(
        api,
        "POST",
        "/servers/copy",
        AUTH,
        web.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        json(&body)["errors"][0]["field"],
        "servers.copy.healthcheck.webhook_url",
        "{body}"
    );
    for (what, text) in everything(api, &bx, &b.line()) {
        assert_clean(&what, &text);
    }
}

#[test]
fn config_errors_do_not_quote_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = "[servers.web]\nbind = \"127.0.0.1:1\"\n[servers.web.discovery]\nkind = \"consul\"\n\
                consul_host = \"ftp://u:S-CONSUL-2@127.0.0.1:1\"\nconsul_service_name = \"x\"\n\
                consul_acl_token = 4242424242\n\
                [servers.web.healthcheck]\nkind = \"webhook\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
                webhook_url = \"ftp://u:S-HOOK-1@127.0.0.1:1/x?token=S-HOOK-2\"\n";
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = run_cli(&["-t", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    for key in ["consul_acl_token", "consul_host", "webhook_url"] {
        assert!(err.contains(key), "{key} not named: {err}");
    }
    assert!(!err.contains("4242424242"), "{err}");
    assert_clean("-t", &(out + &err));
    // A saved dump is no config: the marks are refused by name.
    std::fs::write(
        &path,
        "[api]\nenabled = true\nbind = \"127.0.0.1:1\"\n[api.basic_auth]\nlogin = \"a\"\npassword = \"<redacted>\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["-t", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("api.basic_auth.password: holds <redacted>"),
        "{err}"
    );
}

/// Non-zombie processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.len() > 2 && rest[0] != "Z" && rest[2] == pgid.to_string() {
            out.push(pid);
        }
    }
    out
}

/// Is `pid` a zombie child of `parent`? (betwixt must reap what it ran.)
fn zombie_of(pid: i32, parent: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    rest.len() > 1 && rest[0] == "Z" && rest[1] == parent.to_string()
}

#[test]
fn a_timed_out_discovery_command_dies_with_its_group_and_is_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // No shell unless asked: the program is sh because the test asks for it.
    let script = format!(
        "sleep 1000 & echo \"$$ $!\" > {d}/pids.$$.tmp; mv {d}/pids.$$.tmp {d}/pids.$$; sleep 1000"
    );
    let port = free_port();
    let cfg = format!(
        "[servers.e]\nbind = \"127.0.0.1:{port}\"\n[servers.e.discovery]\nkind = \"exec\"\n\
         interval = \"200ms\"\ntimeout = \"300ms\"\nexec_command = [\"/bin/sh\", \"-c\", {script:?}]\n"
    );
    let mut bx = Betwixt::spawn(&cfg, "betwixt.toml", &[], |_| {});
    bx.wait_listening(&[format!("127.0.0.1:{port}")]);
    let pidfiles = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_none_or(|e| e != "tmp"))
            .collect();
        v.sort();
        v
    };
    assert!(wait_until(WAIT, || pidfiles().len() >= 2), "{}", bx.logs());
    assert!(bx.logs().contains("timed out after 300ms"), "{}", bx.logs());
    let files = pidfiles();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let pids: Vec<i32> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (leader, child) = (pids[0], pids[1]);
        // Each run is cut 300 ms after it started.
        let gone = wait_until(Duration::from_secs(3), || {
            group_members(leader).is_empty() && !zombie_of(leader, bx.pid())
        });
        assert!(
            gone,
            "group of {leader}/{child} survived: {:?}",
            group_members(leader)
        );
    }
}

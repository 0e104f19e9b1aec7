//! Discovery kinds against the real thing: scripts for `exec`, dnsmasq for
//! `srv`, and the failure scenarios (source down with keeplast/setempty,
//! DNS timeout, backends appearing and disappearing under traffic).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::discovery::{LIMIT, discovery_config, logged, serves, serves_nothing};
use common::*;

/// A log record a failing script's stderr tries to forge.
const FORGED: &str = "2026-01-01 00:00:00 [ERROR] (main): forged";

/// A script source: `list` holds the lines; a `down` file makes it fail.
struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let body = format!(
            "#!/bin/sh\n[ -e {d}/down ] && {{ printf 'source down\\n{FORGED}\\n' >&2; exit 1; }}\n\
             [ -e {d}/slow ] && sleep 5\ncat {d}/list\n"
        );
        std::fs::write(dir.path().join("list.sh"), body).unwrap();
        let s = Self { dir };
        s.set(&[]);
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replace the list atomically.
    fn set(&self, lines: &[String]) {
        let tmp = self.path("list.tmp");
        std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
        std::fs::rename(tmp, self.path("list")).unwrap();
    }

    fn flag(&self, name: &str, on: bool) {
        if on {
            std::fs::write(self.path(name), "").unwrap();
        } else {
            let _ = std::fs::remove_file(self.path(name));
        }
    }

    fn discovery(&self, extra: &str) -> String {
        format!(
            "kind = \"exec\"\nexec_command = [\"/bin/sh\", \"{}\"]\ninterval = \"100ms\"\n{extra}",
            self.path("list.sh").display()
        )
    }
}

/// Backend `a`, a script listing it and then `more`, and betwixt on that
/// script with the `extra` discovery keys, once it serves `a`.
fn exec_serving_a(extra: &str, more: &[&str]) -> (Backend, Script, u16, Betwixt) {
    let a = Backend::start("a");
    let src = Script::new();
    let mut lines = vec![a.line()];
    lines.extend(more.iter().map(|l| l.to_string()));
    src.set(&lines);
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &src.discovery(extra)), &[port]);
    assert!(serves(port, &["a"]), "{}", bx.logs());
    (a, src, port, bx)
}

#[test]
fn exec_backends_appear_and_disappear_under_traffic() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let src = Script::new();
    src.set(&[a.line()]);
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &src.discovery("")), &[port]);
    assert!(serves(port, &["a"]), "{}", bx.logs());

    // An open connection to a, then a leaves and b arrives.
    let mut held = connect(port);
    let mut greeting = String::new();
    BufReader::new(&held).read_line(&mut greeting).unwrap();
    assert_eq!(greeting.trim(), "a");
    src.set(&[b.line()]);
    assert!(serves(port, &["b"]), "{}", bx.logs());
    // The removed backend's connection still works.
    assert_eq!(exchange(&mut held, b"still here"), b"still here");

    src.set(&[a.line(), b.line() + " weight=2"]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    src.set(&[]);
    assert!(serves_nothing(port), "{}", bx.logs());
    assert!(bx.logs().contains("discovery: 0 backends"), "{}", bx.logs());
}

/// A backend gone from the list but still carrying a connection is shown
/// with `discovered: false` and counts as electable nowhere (API stats,
/// /health, the electable gauge), as in gobetween's stats.
#[test]
fn removed_busy_backend_is_shown_undiscovered_and_not_electable() {
    let a = Backend::start("a");
    let src = Script::new();
    src.set(&[a.line()]);
    let (port, api) = (free_port(), free_port());
    let cfg = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\n{}",
        discovery_config(port, &src.discovery(""))
    );
    let bx = Betwixt::start(&cfg, &[port, api]);
    assert!(serves(port, &["a"]), "{}", bx.logs());
    let mut held = connect(port);
    assert_eq!(read_line(&mut held), "a");
    src.set(&[]);
    assert!(logged(&bx, "discovery: 0 backends"), "{}", bx.logs());

    let (_, body) = common::http::request(api, "GET", "/servers/test/stats", None, b"");
    let stats = common::http::json(&body);
    let b = &stats["backends"][0];
    assert_eq!(b["port"], a.addr.port().to_string(), "{stats}");
    assert_eq!(b["stats"]["active_connections"], 1, "{stats}");
    assert_eq!(b["stats"]["discovered"], false, "{stats}");
    let (status, body) = common::http::request(api, "GET", "/health", None, b"");
    assert_eq!(status, 503, "no backend takes new connections: {body}");
    assert!(body.contains("no electable backend"), "{body}");
    assert_eq!(exchange(&mut held, b"still here"), b"still here");
}

/// A discovered backend disabled through the API is still disabled after a
/// restart (the state file is applied to the first discovered list; it used
/// to be applied only to the empty list a dynamic server starts with).
#[test]
fn admin_state_of_a_discovered_backend_survives_a_restart() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let src = Script::new();
    src.set(&[a.line(), b.line()]);
    let state = src.path("state");
    let (port, api) = (free_port(), free_port());
    let cfg = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\nstate_file = \"{}\"\n\n{}",
        state.display(),
        discovery_config(port, &src.discovery(""))
    );
    let bx = Betwixt::start(&cfg, &[port, api]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    let path = format!("/servers/test/backends/{}/disable", a.line());
    let (status, body) = common::http::request(api, "POST", &path, None, b"");
    assert_eq!(status, 200, "{body}");
    let saved_disabled = || {
        betwixt::state::saved::read(&state)
            .ok()
            .flatten()
            .is_some_and(|s| s.backends.iter().any(|b| b.admin != 0))
    };
    assert!(wait_until(LIMIT, saved_disabled), "{}", bx.logs());
    drop(bx);

    let bx = Betwixt::start(&cfg, &[port, api]);
    assert!(serves(port, &["b"]), "a stays disabled: {}", bx.logs());
    let (_, body) = common::http::request(api, "GET", "/servers/test/stats", None, b"");
    let stats = common::http::json(&body);
    let admin: Vec<&str> = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["stats"]["admin"].as_str().unwrap())
        .collect();
    assert!(admin.contains(&"disabled"), "{stats}");
}

#[test]
fn exec_keeplast_keeps_serving_when_the_source_fails() {
    let (_a, src, port, bx) = exec_serving_a("", &[]);
    src.flag("down", true);
    assert!(logged(&bx, "keeping the last 1 backends"), "{}", bx.logs());
    assert!(
        bx.logs().contains("source down"),
        "stderr is quoted: {}",
        bx.logs()
    );
    // On one line: the second line of stderr is no log record.
    let logs = bx.logs();
    assert!(!logs.lines().any(|l| l.starts_with(FORGED)), "{logs}");
    assert!(logs.contains(&format!("source down\\n{FORGED}")), "{logs}");
    assert_eq!(who(port), "a");
}

#[test]
fn exec_setempty_empties_and_recovers() {
    let (_a, src, port, bx) = exec_serving_a("failpolicy = \"setempty\"\n", &[]);
    src.flag("down", true);
    assert!(serves_nothing(port), "{}", bx.logs());
    assert!(bx.logs().contains("failpolicy setempty"), "{}", bx.logs());
    src.flag("down", false);
    assert!(serves(port, &["a"]), "{}", bx.logs());
}

#[test]
fn exec_timeout_applies_and_bad_lines_are_reported() {
    let (_a, src, port, bx) = exec_serving_a("timeout = \"300ms\"\n", &["not a backend"]);
    assert!(bx.logs().contains("line 2:"), "{}", bx.logs());
    src.flag("slow", true);
    assert!(logged(&bx, "timed out after 300ms"), "{}", bx.logs());
    assert_eq!(who(port), "a");
}

#[test]
fn exec_reload_with_other_settings_keeps_the_list() {
    let (_a, src, port, bx) = exec_serving_a("", &[]);
    src.flag("down", true);
    let cfg = discovery_config(port, &src.discovery("timeout = \"1s\"\n"));
    assert!(bx.reload(&cfg), "{}", bx.logs());
    assert_eq!(
        who(port),
        "a",
        "the restarted task has not found a list yet"
    );
    // The restarted task's failures say what is really kept (its first
    // one is logged as a warning; it may come before reload() returns).
    let since_reload = || {
        let logs = bx.logs();
        let at = logs.rfind("SIGHUP: reloading").unwrap_or(0);
        logs[at..].to_string()
    };
    let failed = || since_reload().contains("discovery failed: ");
    assert!(wait_until(LIMIT, failed), "{}", bx.logs());
    let tail = since_reload();
    assert!(tail.contains("keeping the last 1 backends"), "{tail}");
}

// ---------------------------------------------------------------- srv

/// dnsmasq on 127.0.0.1:PORT (udp and tcp) serving the given records.
struct Dnsmasq {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(port: u16, records: &[String], dir: &Path) -> Option<Self> {
        let log = dir.join(format!("dnsmasq-{}.log", records.len()));
        let out = std::fs::File::create(&log).ok()?;
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--local=/betwixt.test/",
            "--log-queries",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .args(records)
        .stdin(Stdio::null())
        .stdout(out.try_clone().ok()?)
        .stderr(out);
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--user=root");
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIP: cannot run dnsmasq ({e}); apt-get install dnsmasq");
                return None;
            }
        };
        let mut d = Self { child, port, log };
        let up = wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", port)).is_ok());
        if !up {
            let _ = d.child.kill();
            eprintln!(
                "SKIP: dnsmasq did not start: {}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
            return None;
        }
        d.port = port;
        Some(d)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn srv_record(target: &str, port: u16, priority: u16, weight: u16) -> String {
    format!("--srv-host=_web._tcp.betwixt.test,{target},{port},{priority},{weight}")
}

fn srv_discovery(dns: u16, extra: &str) -> String {
    format!(
        "kind = \"srv\"\nsrv_lookup_server = \"127.0.0.1:{dns}\"\n\
         srv_lookup_pattern = \"_web._tcp.betwixt.test.\"\ninterval = \"200ms\"\n{extra}"
    )
}

#[test]
fn srv_from_dnsmasq_with_a_and_aaaa_records_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = Backend::start("a");
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let b = if v6 {
        Backend::start_at("b", "[::1]:0".parse().unwrap())
    } else {
        Backend::start("b")
    };
    let dns = free_port();
    let b_host = if v6 {
        "b.betwixt.test,::1"
    } else {
        "b.betwixt.test,127.0.0.1"
    };
    let records = vec![
        srv_record("a.betwixt.test", a.addr.port(), 1, 5),
        srv_record("b.betwixt.test", b.addr.port(), 1, 5),
        "--host-record=a.betwixt.test,127.0.0.1".to_string(),
        format!("--host-record={b_host}"),
    ];
    let Some(server) = Dnsmasq::start(dns, &records, dir.path()) else {
        return;
    };
    for proto in ["udp", "tcp"] {
        let port = free_port();
        let extra = format!("srv_dns_protocol = \"{proto}\"\n");
        let bx = Betwixt::start_quiet(
            &discovery_config(port, &srv_discovery(dns, &extra)),
            &[port],
        );
        assert!(serves(port, &["a", "b"]), "{proto}: {}", bx.logs());
    }

    // The records change: b leaves (dnsmasq restarts with fewer records;
    // meanwhile DNS fails and keeplast serves the last list).
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &srv_discovery(dns, "")), &[port]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    drop(server);
    let records = vec![
        srv_record("a.betwixt.test", a.addr.port(), 1, 5),
        "--host-record=a.betwixt.test,127.0.0.1".to_string(),
    ];
    let _server = Dnsmasq::start(dns, &records, dir.path()).expect("dnsmasq restarts");
    assert!(serves(port, &["a"]), "{}", bx.logs());
}

#[test]
fn srv_priority_comes_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dns = free_port();
    let records = vec![
        srv_record("a.betwixt.test", a.addr.port(), 1, 1),
        srv_record("b.betwixt.test", b.addr.port(), 2, 1),
        "--host-record=a.betwixt.test,127.0.0.1".to_string(),
        "--host-record=b.betwixt.test,127.0.0.1".to_string(),
    ];
    let Some(_server) = Dnsmasq::start(dns, &records, dir.path()) else {
        return;
    };
    let port = free_port();
    let cfg = discovery_config(port, &srv_discovery(dns, "")).replace("roundrobin", "weight");
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    assert!(serves(port, &["a"]), "priority 1 only: {}", bx.logs());
}

#[test]
fn srv_dns_timeout_keeplast_and_setempty() {
    // A DNS "server" that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap().port();
    for (policy, empties) in [("keeplast", false), ("setempty", true)] {
        let port = free_port();
        let extra = format!("timeout = \"300ms\"\nfailpolicy = \"{policy}\"\n");
        let bx = Betwixt::start_quiet(
            &discovery_config(port, &srv_discovery(dns, &extra)),
            &[port],
        );
        let timed_out = logged(&bx, "timed out after 300ms");
        assert!(timed_out, "{policy}: {}", bx.logs());
        assert_eq!(
            bx.logs().contains("setempty: no backends"),
            empties,
            "{}",
            bx.logs()
        );
        let mut s = connect(port);
        assert!(closed_without_data(&mut s, Duration::from_secs(2)));
    }
    drop(silent);
}

/// An SRV record with port 0 is skipped with a warning (it used to become a
/// backend HOST:0), and an answer in another order (dnsmasq rotates its
/// records) is not a new list, nor new warnings, at every fetch.
#[test]
fn srv_port_zero_is_skipped_and_a_reordered_answer_is_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dns = free_port();
    let records = vec![
        srv_record("a.betwixt.test", a.addr.port(), 1, 1),
        srv_record("b.betwixt.test", b.addr.port(), 1, 1),
        srv_record("z.betwixt.test", 0, 1, 1),
        srv_record("x.betwixt.test", 9, 1, 1),
        srv_record("y.betwixt.test", 9, 1, 1),
        "--host-record=a.betwixt.test,127.0.0.1".to_string(),
        "--host-record=b.betwixt.test,127.0.0.1".to_string(),
        "--host-record=z.betwixt.test,127.0.0.1".to_string(),
    ];
    let Some(server) = Dnsmasq::start(dns, &records, dir.path()) else {
        return;
    };
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &srv_discovery(dns, "")), &[port]);
    assert!(logged(&bx, "discovery: 2 backends"), "{}", bx.logs());
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    assert!(
        bx.logs().contains("z.betwixt.test: port 0; skipped"),
        "{}",
        bx.logs()
    );
    // Ten more SRV answers (interval 200ms), each in dnsmasq's order.
    let queries = || {
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        log.matches("query[SRV]").count()
    };
    let seen = queries();
    assert!(wait_until(LIMIT, || queries() >= seen + 10));
    let logs = bx.logs();
    assert_eq!(logs.matches("discovery: 2 backends").count(), 1, "{logs}");
    // The warnings, in the records' order too, are logged once.
    assert_eq!(logs.matches("port 0; skipped").count(), 1, "{logs}");
    assert_eq!(logs.matches("has no A or AAAA").count(), 2, "{logs}");
}

/// An SRV record with target "." says the service is not available here
/// (RFC 2782): an empty list, not a follow-up query for "." whose refusal
/// failed the fetch.
#[test]
fn srv_target_dot_is_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let dns = free_port();
    let records = ["--srv-host=_web._tcp.betwixt.test".to_string()];
    let Some(_server) = Dnsmasq::start(dns, &records, dir.path()) else {
        return;
    };
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &srv_discovery(dns, "")), &[port]);
    assert!(logged(&bx, "discovery: 0 backends"), "{}", bx.logs());
    assert!(!bx.logs().contains("discovery failed"), "{}", bx.logs());
}

/// An SRV answer with two targets, one of which has no A record that
/// can be looked up (dnsmasq, with no upstream server, refuses a name
/// outside its local domain): only that target is skipped, with one
/// warning naming it, and the other backend is served. When no target
/// gives a backend, the fetch fails and keeplast keeps the last list.
#[test]
fn srv_target_whose_address_lookup_fails_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = Backend::start("a");
    let dns = free_port();
    let records = vec![
        srv_record("a.betwixt.test", a.addr.port(), 1, 1),
        srv_record("c.elsewhere.test", 9, 1, 1),
        "--host-record=a.betwixt.test,127.0.0.1".to_string(),
    ];
    let Some(server) = Dnsmasq::start(dns, &records, dir.path()) else {
        return;
    };
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &srv_discovery(dns, "")), &[port]);
    assert!(logged(&bx, "discovery: 1 backends"), "{}", bx.logs());
    assert!(serves(port, &["a"]), "{}", bx.logs());
    let warning = "c.elsewhere.test: address lookup failed";
    assert!(logged(&bx, warning), "{}", bx.logs());
    // Five more fetches (interval 200ms): the same warning is not repeated.
    let queries = || {
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        log.matches("query[SRV]").count()
    };
    let seen = queries();
    assert!(wait_until(LIMIT, || queries() >= seen + 5));
    let logs = bx.logs();
    assert_eq!(logs.matches(warning).count(), 1, "{logs}");
    assert!(!logs.contains("discovery failed"), "{logs}");

    // Now a's record goes too: every target fails, the fetch fails and
    // keeplast keeps serving a.
    drop(server);
    let records = vec![srv_record("c.elsewhere.test", 9, 1, 1)];
    let _server = Dnsmasq::start(dns, &records, dir.path()).expect("dnsmasq restarts");
    assert!(
        logged(
            &bx,
            "discovery failed: no SRV target gave a backend; c.elsewhere.test"
        ),
        "{}",
        bx.logs()
    );
    assert!(serves(port, &["a"]), "{}", bx.logs());
}

#[test]
fn unknown_srv_name_is_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let dns = free_port();
    let Some(_server) = Dnsmasq::start(dns, &[], dir.path()) else {
        return;
    };
    let port = free_port();
    let bx = Betwixt::start_quiet(&discovery_config(port, &srv_discovery(dns, "")), &[port]);
    assert!(logged(&bx, "discovery: 0 backends"), "{}", bx.logs());
}

/// An `exec_command` argument with a newline reaches the program whole:
/// `sh -c` gets both lines of its script (split, it would run only the
/// first and list only a).
#[test]
fn exec_argument_with_a_newline_stays_one_argument() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = free_port();
    let script = format!("echo {}\\necho {}", a.line(), b.line());
    let disc = format!(
        "kind = \"exec\"\nexec_command = [\"/bin/sh\", \"-c\", \"{script}\"]\ninterval = \"100ms\"\n"
    );
    let bx = Betwixt::start_quiet(&discovery_config(port, &disc), &[port]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
}

//! `icmp` health checks through the real daemon: the raw-socket path (root),
//! the ping-socket path (an unprivileged user in a namespace whose
//! ping_group_range is open), the unavailable path (neither), and a host in
//! a network namespace that goes away. Needs root and `ip`; skips otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(15);

use common::root::run;

/// A network namespace, deleted on drop (with the veth ends inside it).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("bxhc-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn sysctl(&self, setting: &str) {
        run(
            "ip",
            &["netns", "exec", &self.0, "sysctl", "-q", "-w", setting],
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A link in the root namespace, deleted on drop.
struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// betwixt run by `prefix` (e.g. `ip netns exec NS setpriv ...`), with its
/// config readable by an unprivileged user; killed on drop.
struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(prefix: &[&str], config: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = dir.path().join("betwixt.toml");
        std::fs::write(&cfg, config).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = dir.path().join("log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = match prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("-c")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let d = Daemon {
            child: cmd.spawn().expect("spawn betwixt"),
            _dir: dir,
            log,
        };
        let listening = format!("listening on 127.0.0.1:{port}");
        assert!(
            wait_until(WAIT, || d.logs().contains(&listening)),
            "betwixt did not start:\n{}",
            d.logs()
        );
        d
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_log(&self, parts: &[&str]) {
        let found = wait_until(WAIT, || {
            self.logs()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
        });
        assert!(found, "no log line with {parts:?}:\n{}", self.logs());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn icmp_config(port: u16, lines: &[String], initial: &str) -> String {
    config(
        port,
        "roundrobin",
        lines,
        &format!(
            "[servers.test.healthcheck]\nkind = \"icmp\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n\
             icmp_count = 2\ninitial_status = \"{initial}\"\n"
        ),
    )
}

const NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

#[test]
fn raw_socket_echo_to_loopback_v4_and_v6() {
    need_root!();
    // The root namespace keeps ping sockets closed: root uses a raw socket.
    let a = Backend::start("a");
    let b = Backend::start_at("b", "[::1]:0".parse().unwrap());
    let port = free_port();
    let d = Daemon::start(
        &[],
        &icmp_config(port, &[a.line(), b.line()], "unhealthy"),
        port,
    );
    for be in [&a, &b] {
        d.wait_log(&[&format!("backend {} is up", be.line()), "2/2 echo replies"]);
    }
    let names: Vec<String> = (0..4).map(|_| who(port)).collect();
    assert!(
        names.contains(&"a".into()) && names.contains(&"b".into()),
        "{names:?}"
    );
}

#[test]
fn ping_socket_as_an_unprivileged_user() {
    need_root!();
    let ns = Netns::new("ping");
    ns.sysctl("net.ipv4.ping_group_range=0 2147483647");
    let port = free_port();
    let lines = ["127.0.0.1:9".to_string(), "[::1]:9".to_string()];
    let mut prefix = vec!["ip", "netns", "exec", ns.0.as_str()];
    prefix.extend(NOBODY);
    let d = Daemon::start(&prefix, &icmp_config(port, &lines, "unhealthy"), port);
    // No CAP_NET_RAW here: only a ping socket can have answered.
    for l in &lines {
        d.wait_log(&[&format!("backend {l} is up"), "2/2 echo replies"]);
    }
}

#[test]
fn without_any_icmp_socket_the_check_is_unavailable_and_never_passes() {
    need_root!();
    let ns = Netns::new("noicmp");
    ns.sysctl("net.ipv4.ping_group_range=1 0");
    let port = free_port();
    let lines = ["127.0.0.1:9".to_string()];
    let mut prefix = vec!["ip", "netns", "exec", ns.0.as_str()];
    prefix.extend(NOBODY);
    let d = Daemon::start(&prefix, &icmp_config(port, &lines, "healthy"), port);
    d.wait_log(&[
        "backend 127.0.0.1:9 is down",
        "unavailable: no ICMP socket",
        "needs CAP_NET_RAW",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!d.logs().contains("is up"), "{}", d.logs());
}

#[test]
fn host_in_a_namespace_goes_down_when_its_link_does() {
    need_root!();
    let ns = Netns::new("host");
    let pid = std::process::id();
    let (third, fourth) = ((pid >> 6) % 256, (pid % 64) * 4);
    let (outer, inner) = (
        format!("198.19.{third}.{}", fourth + 1),
        format!("198.19.{third}.{}", fourth + 2),
    );
    let link = Link(format!("bxhc{pid}"));
    run(
        "ip",
        &[
            "link", "add", &link.0, "type", "veth", "peer", "name", "eth0", "netns", &ns.0,
        ],
    );
    run(
        "ip",
        &["addr", "add", &format!("{outer}/30"), "dev", &link.0],
    );
    run("ip", &["link", "set", &link.0, "up"]);
    run(
        "ip",
        &[
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{inner}/30"),
            "dev",
            "eth0",
        ],
    );
    run("ip", &["-n", &ns.0, "link", "set", "eth0", "up"]);
    let port = free_port();
    let key = format!("{inner}:80");
    let d = Daemon::start(
        &[],
        &icmp_config(port, std::slice::from_ref(&key), "unhealthy"),
        port,
    );
    d.wait_log(&[&format!("backend {key} is up"), "echo replies"]);
    // Carrier loss on the root side: the host stops answering.
    run("ip", &["link", "set", &link.0, "down"]);
    d.wait_log(&[&format!("backend {key} is down"), "no_icmp_reply"]);
}

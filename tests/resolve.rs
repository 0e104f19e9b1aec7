//! The resolver cache against a real DNS server: dnsmasq in a network
//! namespace of its own, whose /etc/resolv.conf (as `ip netns exec` shows
//! it) names only that dnsmasq, with betwixt, the backends and the clients
//! in the same namespace. One host name, `app.test`, is used by all four
//! paths that resolve names: the TCP dial (a static backend and a json
//! discovered one), a tcp health check every 200 ms, the json discovery
//! endpoint's URL, and srv discovery's `srv_lookup_server`. dnsmasq's
//! query log shows a handful of lookups, not one per use; then dnsmasq is
//! killed and everything keeps working on the last answer, with one
//! warning. Needs root, `ip` and `dnsmasq`; skips otherwise.

mod common;
#[path = "common/http_server.rs"]
mod http_server;

use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::root;
use common::*;
use http_server::HttpServer;

/// The cache's freshness (`resolve::cache::FRESH`).
const FRESH: Duration = Duration::from_secs(5);
/// Queries one lookup sends (`getaddrinfo`: A and AAAA).
const QUERIES_PER_LOOKUP: u64 = 2;
/// The port of the second dnsmasq, which serves the SRV records.
const SRV_DNS_PORT: u16 = 5353;

/// A network namespace ([`root::Netns`]) with `/etc/netns/NAME/resolv.conf`
/// naming 127.0.0.1; both deleted on drop (also when the test panics).
struct DnsNetns(root::Netns);

impl DnsNetns {
    fn new() -> Self {
        let ns = DnsNetns(root::Netns::new("bxrs", "dns"));
        std::fs::create_dir_all(ns.etc()).expect("/etc/netns/NAME");
        // One try, one second: a dead server fails the lookup at once.
        let conf = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
        std::fs::write(ns.etc().join("resolv.conf"), conf).expect("resolv.conf");
        ns
    }

    /// What `ip netns exec` bind-mounts over /etc.
    fn etc(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.0.0)
    }
}

impl std::ops::Deref for DnsNetns {
    type Target = root::Netns;
    fn deref(&self) -> &root::Netns {
        &self.0
    }
}

impl Drop for DnsNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.etc());
        // `/etc/netns` itself, unless something else uses it (not empty).
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// dnsmasq in a namespace, logging its queries to a file; killed on drop.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
}

impl Dnsmasq {
    /// Start on 127.0.0.1:`port` answering only for `*.test` from
    /// `records`; wait until it answers.
    fn start(ns: &root::Netns, log: PathBuf, port: u16, records: &[String]) -> Self {
        let [ip, rest @ ..] = ns.exec();
        let child = Command::new(ip)
            .args(rest)
            .arg("dnsmasq")
            .args(["--keep-in-foreground", "--conf-file=/dev/null"])
            .args(["--no-resolv", "--no-hosts", "--local=/test/"])
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .args(["--user=root", "--pid-file=", "--log-queries"])
            .arg(format!("--log-facility={}", log.display()))
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log.with_extension("err")).expect("stderr file"))
            .spawn()
            .expect("spawn dnsmasq");
        let d = Dnsmasq { child, log };
        // Asked for another name: not counted with app.test.
        let answers = ns.run(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            wait_until(Duration::from_secs(5), || {
                let _ = s.send_to(&dns_query("ready.test"), ("127.0.0.1", port));
                s.recv_from(&mut [0u8; 512]).is_ok()
            })
        });
        assert!(answers, "dnsmasq on {port} does not answer:\n{}", d.logs());
        d
    }

    /// Its log, and what it wrote to stderr (why it did not start).
    fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let err = read(&self.log.with_extension("err"));
        format!("{}{err}", read(&self.log))
    }

    /// Queries (any type) logged for `name`.
    fn queries(&self, name: &str) -> u64 {
        let tail = format!("] {name} from ");
        let logs = self.logs();
        let n = logs
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&tail))
            .count();
        n as u64
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ports of betwixt's servers and of the backends, all in the namespace.
#[derive(Clone, Copy)]
struct Ports {
    fixed: u16,
    listed: u16,
    srv: u16,
    http: u16,
    s: u16,
    v: u16,
}

/// Servers: `fixed` (static `app.test:S`, tcp health check every 200 ms),
/// `listed` (json discovery at `http://app.test:HTTP/...` listing
/// `app.test:J`), `srv` (SRV records from `app.test:5353`, which lists
/// 127.0.0.1:V), and `missing`, whose endpoint names a host without
/// address (its query must not reach the log).
fn config(p: Ports) -> String {
    format!(
        "[logging]\nlevel = \"debug\"\n\n\
         [servers.fixed]\nbind = \"127.0.0.1:{fixed}\"\n\
         [servers.fixed.discovery]\nkind = \"static\"\nstatic_list = [\"app.test:{s}\"]\n\
         [servers.fixed.healthcheck]\nkind = \"ping\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n\
         [servers.listed]\nbind = \"127.0.0.1:{listed}\"\n\
         [servers.listed.discovery]\nkind = \"json\"\ninterval = \"300ms\"\n\
         json_endpoint = \"http://app.test:{http}/list?token=SECRET1\"\n\
         json_host_pattern = \"host\"\njson_port_pattern = \"port\"\n\n\
         [servers.srv]\nbind = \"127.0.0.1:{srv}\"\n\
         [servers.srv.discovery]\nkind = \"srv\"\ninterval = \"300ms\"\n\
         srv_lookup_server = \"app.test:{SRV_DNS_PORT}\"\n\
         srv_lookup_pattern = \"_app._tcp.svc.test.\"\n\n\
         [servers.missing]\nbind = \"127.0.0.1:{missing}\"\n\
         [servers.missing.discovery]\nkind = \"json\"\ninterval = \"300ms\"\n\
         json_endpoint = \"http://nowhere.test:{http}/list?token=SECRET2\"\n",
        fixed = p.fixed,
        listed = p.listed,
        srv = p.srv,
        missing = free_port(),
        s = p.s,
        http = p.http,
    )
}

/// One connection to each server, in the namespace: the greetings (the
/// backends' names), each within a bound.
fn round(ns: &root::Netns, p: Ports) -> Vec<String> {
    let started = Instant::now();
    let got = ns.run(move || [p.fixed, p.listed, p.srv].map(who).to_vec());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a round took {:?}",
        started.elapsed()
    );
    got
}

fn want() -> Vec<String> {
    ["s", "j", "v"].map(String::from).to_vec()
}

#[test]
fn repeated_use_asks_dns_rarely_and_survives_a_dead_dns_server() {
    need_root!();
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        eprintln!("skipped: dnsmasq is not installed");
        return;
    }
    let ns = DnsNetns::new();
    let dir = tempfile::tempdir().unwrap();
    let (s, j, v) = ns.run(|| {
        (
            Backend::start("s"),
            Backend::start("j"),
            Backend::start("v"),
        )
    });
    let http = ns.run(HttpServer::start);
    http.set_text(&format!(
        "[{{\"host\":\"app.test\",\"port\":{}}}]",
        j.addr.port()
    ));
    let p = Ports {
        fixed: free_port(),
        listed: free_port(),
        srv: free_port(),
        http: http.addr.port(),
        s: s.addr.port(),
        v: v.addr.port(),
    };
    let srv_records = [
        format!("--srv-host=_app._tcp.svc.test,v.svc.test,{},0,1", p.v),
        "--host-record=v.svc.test,127.0.0.1".to_string(),
    ];
    let srv_dns = Dnsmasq::start(&ns, dir.path().join("srv.log"), SRV_DNS_PORT, &srv_records);
    let app = ["--host-record=app.test,127.0.0.1".to_string()];
    let mut dns = Dnsmasq::start(&ns, dir.path().join("dns.log"), 53, &app);
    assert_eq!(dns.queries("app.test"), 0, "{}", dns.logs());

    // Phase 1: ~6 s of use by all four paths.
    let started = Instant::now();
    let mut bx = Betwixt::spawn_by(&ns.exec(), &config(p), "betwixt.toml", &[], |_| {});
    let binds = [p.fixed, p.listed, p.srv].map(|port| format!("127.0.0.1:{port}"));
    bx.wait_listening(&binds);
    let mut rounds = 0u64;
    let serving = wait_until(Duration::from_secs(10), || {
        rounds += 1;
        round(&ns, p) == want()
    });
    assert!(serving, "not every server serves:\n{}", bx.logs());
    // Before the first fetches, a round may find a server without backends.
    let settled = bx.logs().len();
    for _ in 0..30 {
        rounds += 1;
        assert_eq!(round(&ns, p), want(), "{}", bx.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    let queries = dns.queries("app.test");
    // One lookup per freshness window (each after the last one's answer
    // went stale), one more for a window cut by the end, one of slack.
    let windows = elapsed.as_secs() / FRESH.as_secs();
    let bound = QUERIES_PER_LOOKUP * (windows + 2);
    // A path that bypassed the cache would add a query or more per use:
    // each path was used more often than the bound.
    let checks = (s.accepted.load(Ordering::Relaxed) as u64).saturating_sub(rounds);
    let fetches = http.requests.lock().unwrap().len() as u64;
    let srv_fetches = srv_dns.queries("_app._tcp.svc.test");
    let uses = [
        ("connections to app.test:S", rounds),
        ("connections to app.test:J", rounds),
        ("health checks", checks),
        ("json fetches", fetches),
        ("srv fetches", srv_fetches),
    ];
    eprintln!("{queries} queries for app.test in {elapsed:?} (bound {bound}); uses: {uses:?}");
    for (what, n) in uses {
        assert!(
            n > bound,
            "only {n} {what} in {elapsed:?}: the bound {bound} proves nothing"
        );
    }
    assert!(
        (1..=bound).contains(&queries),
        "{queries} queries for app.test in {elapsed:?} (bound {bound}; uses {uses:?}):\n{}\n{}",
        dns.logs(),
        bx.logs()
    );

    // Phase 2: the DNS server dies. Everything goes on with the last
    // answer; the failed refresh is one warning.
    dns.kill();
    let warning = "[WARN] (resolve): resolve app.test: ";
    let warned = wait_until(Duration::from_secs(10), || {
        assert_eq!(round(&ns, p), want(), "{}", bx.logs());
        bx.logs().contains(warning)
    });
    assert!(warned, "no warning:\n{}", bx.logs());
    let checked = s.accepted.load(Ordering::Relaxed);
    let fetched = http.requests.lock().unwrap().len();
    let srv_fetched = srv_dns.queries("_app._tcp.svc.test");
    for _ in 0..8 {
        assert_eq!(round(&ns, p), want(), "{}", bx.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Checks (beyond the 8 connections), fetches and srv queries went on.
    assert!(s.accepted.load(Ordering::Relaxed) > checked + 8 + 2);
    assert!(http.requests.lock().unwrap().len() > fetched + 2);
    assert!(srv_dns.queries("_app._tcp.svc.test") > srv_fetched + 2);
    let logs = bx.logs();
    assert_eq!(logs.matches(warning).count(), 1, "{logs}");
    let line = logs.lines().find(|l| l.contains(warning)).unwrap();
    assert!(line.contains("using the last answer"), "{line}");
    // The names in trouble are named; no URL's query (token) is shown.
    assert!(logs.contains("resolve nowhere.test: "), "{logs}");
    assert!(!logs.contains("SECRET"), "{logs}");
    for l in logs.get(settled..).unwrap_or_default().lines() {
        let allowed = l.contains("nowhere.test") || l.contains(warning);
        assert!(
            allowed || !(l.contains("[WARN]") || l.contains("[ERROR]")),
            "{l}\n{logs}"
        );
    }
    drop(bx);
}

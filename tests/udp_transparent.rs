//! `[servers.NAME.udp] transparent = true`: a clear startup error without
//! the capability (betwixt run as an unprivileged user), and the transparent
//! path itself as root across three network namespaces (client, betwixt,
//! backend; 198.18.0.0/15, and 2001:2::/48 for IPv6): the backend sees the
//! client's address as the source, and its reply still reaches the client
//! through betwixt, also on a wildcard bind with two addresses (the reply
//! leaves from the one the client contacted), over IPv4 and IPv6. Needs
//! root, `ip` and `setpriv`; skips otherwise.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use common::*;

use common::root::Netns;

/// A config in a directory an unprivileged user can read.
fn public_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("betwixt.toml");
    std::fs::write(&cfg, text).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, cfg)
}

fn transparent_config(bind: &str, backend: &str) -> String {
    format!(
        "[servers.u]\nbind = \"{bind}\"\nprotocol = \"udp\"\nclient_idle_timeout = \"5s\"\n\
         [servers.u.udp]\ntransparent = true\n\
         [servers.u.discovery]\nkind = \"static\"\nstatic_list = [\"{backend}\"]\n"
    )
}

#[test]
fn without_the_capability_transparent_is_a_clear_startup_error() {
    need_root!();
    let port = free_port();
    let (_dir, cfg) = public_config(&transparent_config(
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:9",
    ));
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(BIN)
        .arg("-c")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = wait_until(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(exited, "still running:\n{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: udp.transparent needs CAP_NET_ADMIN or CAP_NET_RAW (IP_TRANSPARENT)"
        )),
        "{text}"
    );
}

/// Kills the daemon on drop.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Addresses of the three namespaces in one family.
struct Plan {
    client: &'static str,
    /// betwixt's two addresses on the client side (the second for the
    /// wildcard test), then its backend-side address.
    front: [&'static str; 2],
    back: &'static str,
    backend: &'static str,
    prefix: &'static str,
    /// `ip` option for rules and routes, and the "any" route.
    family: &'static str,
    any: &'static str,
}

const V4: Plan = Plan {
    client: "198.18.0.1",
    front: ["198.18.0.2", "198.18.0.3"],
    back: "198.18.1.2",
    backend: "198.18.1.1",
    prefix: "24",
    family: "-4",
    any: "0.0.0.0/0",
};

/// IPv6 in the benchmarking prefix 2001:2::/48 (RFC 5180, the IPv6
/// counterpart of 198.18.0.0/15), only ever inside these namespaces.
const V6: Plan = Plan {
    client: "2001:2:0:1::1",
    front: ["2001:2:0:1::2", "2001:2:0:1::3"],
    back: "2001:2:0:2::2",
    backend: "2001:2:0:2::1",
    prefix: "64",
    family: "-6",
    any: "::/0",
};

/// client -- betwixt (front, back) -- backend, e.g. 198.18.0.1 --
/// 198.18.0.2 betwixt 198.18.1.2 -- 198.18.1.1. The backend routes back
/// through betwixt; betwixt delivers what comes from the backend side
/// locally (policy routing), where the transparent session socket bound to
/// the client's address picks it up.
fn topology(p: &Plan) -> (Netns, Netns, Netns) {
    let (cl, bx, be) = (
        Netns::new("bxtp", "cl"),
        Netns::new("bxtp", "bx"),
        Netns::new("bxtp", "be"),
    );
    bx.ip(&[
        "link", "add", "vcl", "type", "veth", "peer", "name", "eth0", "netns", &cl.0,
    ]);
    bx.ip(&[
        "link", "add", "vbe", "type", "veth", "peer", "name", "eth0", "netns", &be.0,
    ]);
    for (ns, dev, addr) in [
        (&cl, "eth0", p.client),
        (&bx, "vcl", p.front[0]),
        (&bx, "vcl", p.front[1]),
        (&bx, "vbe", p.back),
        (&be, "eth0", p.backend),
    ] {
        // nodad: IPv6 addresses usable at once (no duplicate detection).
        let cidr = format!("{addr}/{}", p.prefix);
        let mut args = vec!["addr", "add", cidr.as_str(), "dev", dev];
        if p.family == "-6" {
            args.push("nodad");
        }
        ns.ip(&args);
        ns.ip(&["link", "set", dev, "up"]);
    }
    be.ip(&[p.family, "route", "add", "default", "via", p.back]);
    bx.ip(&[p.family, "rule", "add", "iif", "vbe", "lookup", "100"]);
    bx.ip(&[
        p.family, "route", "add", "local", p.any, "dev", "lo", "table", "100",
    ]);
    (cl, bx, be)
}

#[test]
fn with_transparent_the_backend_sees_the_client_address_and_replies_flow_back() {
    need_root!();
    round_trips(&V4, V4.front[0], &[V4.front[0]]);
}

#[test]
fn on_a_wildcard_bind_replies_leave_from_each_contacted_address() {
    need_root!();
    round_trips(&V4, "0.0.0.0", &V4.front);
}

#[test]
fn over_ipv6_the_backend_sees_the_client_address_and_replies_flow_back() {
    need_root!();
    round_trips(&V6, "[2001:2:0:1::2]", &[V6.front[0]]);
}

#[test]
fn over_ipv6_on_a_wildcard_bind_replies_leave_from_each_contacted_address() {
    need_root!();
    round_trips(&V6, "[::]", &V6.front);
}

/// betwixt (transparent, bound to `bind`) relays one datagram from a fresh
/// client socket to each of `contacted`: the backend must see the client's
/// own address, and the reply must come back from the contacted address.
fn round_trips(plan: &Plan, bind: &str, contacted: &[&str]) {
    let (cl, bx, be) = topology(plan);
    let count = contacted.len();
    let backend_addr = SocketAddr::new(plan.backend.parse().unwrap(), 7000);
    let client_addr = SocketAddr::new(plan.client.parse().unwrap(), 0);
    let backend = be.thread(move || {
        let s = UdpSocket::bind(backend_addr).expect("backend bind");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut seen = Vec::new();
        for _ in 0..count {
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).expect("a datagram at the backend");
            let mut out = b"b:".to_vec();
            out.extend(&buf[..n]);
            s.send_to(&out, from).unwrap();
            seen.push(from);
        }
        seen
    });
    let port = 7100;
    let (_dir, cfg) = public_config(&transparent_config(
        &format!("{bind}:{port}"),
        &backend_addr.to_string(),
    ));
    let log = _dir.path().join("log");
    let out = std::fs::File::create(&log).unwrap();
    let daemon = Kill(
        Command::new("ip")
            .args(["netns", "exec", &bx.0])
            .arg(BIN)
            .arg("-c")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn betwixt"),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || logs()
            .contains(&format!("listening on {bind}:{port}"))),
        "{}",
        logs()
    );
    let targets: Vec<std::net::IpAddr> = contacted.iter().map(|a| a.parse().unwrap()).collect();
    let client = cl.thread(move || {
        let mut results = Vec::new();
        for ip in targets {
            let s = UdpSocket::bind(client_addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let to = SocketAddr::new(ip, port);
            s.send_to(b"hi", to).unwrap();
            let mut buf = [0u8; 64];
            let got = s
                .recv_from(&mut buf)
                .map(|(n, src)| (buf[..n].to_vec(), src));
            results.push((to, s.local_addr().unwrap(), got));
        }
        results
    });
    let results = client.join().unwrap();
    let seen = backend
        .join()
        .unwrap_or_else(|_| panic!("backend: {}", logs()));
    for ((to, me, got), seen) in results.into_iter().zip(seen) {
        assert_eq!(seen, me, "the backend saw the client's own address");
        let (reply, src) = got.unwrap_or_else(|e| panic!("no reply via {to}: {e}\n{}", logs()));
        assert_eq!(reply, b"b:hi");
        assert_eq!(src, to, "the reply left from the contacted address");
    }
    drop(daemon);
}

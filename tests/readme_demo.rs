//! The README's first command, `cargo run --release --example demo`, as a
//! newcomer uses it: betwixt on 127.0.0.1:8080 balances three backends
//! (each answer names its backend) and the status page and API answer on
//! 127.0.0.1:8888. Runs the debug build of the example, which `cargo test`
//! builds with the tests.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http::{raw, request};
use common::wait_until;

/// The demo's fixed ports (examples/betwixt.toml and examples/demo.rs).
const PORTS: [u16; 5] = [8080, 8888, 9001, 9002, 9003];

/// `target/debug/examples/demo`, next to this test's `deps` directory.
fn demo_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("examples").join("demo");
    bin.is_file().then_some(bin)
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_demo_balances_three_backends_and_serves_the_status_page() {
    let Some(bin) = demo_binary() else {
        // Only a filtered run (`cargo test --test readme_demo`) skips the
        // examples; `cargo test` (the README's test command) builds them.
        eprintln!("skipped: the demo example is not built (run `cargo test`)");
        return;
    };
    for port in PORTS {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port}, which the demo uses, is taken by another program"
        );
    }
    let child = Command::new(bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let mut demo = Demo(child);
    let get = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n";
    let mut seen = BTreeSet::new();
    let served = wait_until(Duration::from_secs(20), || {
        assert!(
            demo.0.try_wait().ok().flatten().is_none(),
            "the demo exited"
        );
        if std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err() {
            return false;
        }
        let reply = raw(8080, get);
        if let Some(line) = reply.lines().find(|l| l.starts_with("hello from backend ")) {
            seen.insert(line.to_string());
        }
        seen.len() == 3
    });
    assert!(served, "not every backend answered through 8080: {seen:?}");
    let (status, page) = request(8888, "GET", "/status", None, b"");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("demo"), "{page}");
    let (status, servers) = request(8888, "GET", "/servers", None, b"");
    assert_eq!(status, 200, "{servers}");
    assert!(servers.contains("127.0.0.1:8080"), "{servers}");
    drop(demo);
}

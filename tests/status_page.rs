//! The status page in a real headless Chromium: the DOM shows a backend
//! going down, and a screenshot is saved (target/status-page.png).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::request;
use common::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Run headless Chromium with `args` on `url`, bounded in time; stdout.
fn headless(bin: &str, profile: &std::path::Path, args: &[&str], url: &str) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "60",
        bin,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
    ])
    .args([
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
    ])
    .args(["--disable-sync", "--disable-dev-shm-usage"])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stderr(Stdio::null());
    let out = cmd.output().expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_page_shows_a_backend_going_down() {
    let Some(bin) = chromium() else {
        eprintln!("SKIP status_page_shows_a_backend_going_down: chromium is not installed");
        return;
    };
    let up = Backend::start("up");
    let doomed = Backend::start("doomed");
    let (api, port) = (free_port(), free_port());
    let cfg = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\n[servers.web]\nbind = \"127.0.0.1:{port}\"\n\
[servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"{}\", \"{}\"]\n\
[servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n",
        up.line(),
        doomed.line()
    );
    let _bx = Betwixt::start(&cfg, &[port, api]);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{api}/status");
    let row = format!("id=\"backend-web-{}\"", doomed.line());

    let dom = headless(bin, profile.path(), &["--dump-dom"], &url);
    assert!(dom.contains(&row), "row missing:\n{dom}");
    assert!(dom.contains(&format!("{row} data-health=\"up\"")), "{dom}");

    doomed.stop_refusing();
    assert!(wait_until(Duration::from_secs(5), || {
        request(api, "GET", "/status", None, b"")
            .1
            .contains(&format!("{row} data-health=\"down\""))
    }));
    let dom = headless(bin, profile.path(), &["--dump-dom"], &url);
    assert!(
        dom.contains(&format!("{row} data-health=\"down\"")),
        "{dom}"
    );
    assert!(dom.contains("1 of 2 backends electable"), "{dom}");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    headless(bin, profile.path(), &[&arg, "--window-size=1280,600"], &url);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", shot.display());
}

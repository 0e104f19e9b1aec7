//! `betwixt healthd`: gruntwork health-checker semantics with real ports,
//! real scripts and 200 concurrent requests.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A running `betwixt healthd`, its stderr in a temp file.
struct Healthd {
    child: Child,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Healthd {
    fn start(port: u16, args: &[&str]) -> Self {
        Self::start_under(&[], port, args)
    }

    /// Start it as the last argument of `prefix` (e.g. `unshare ...`).
    fn start_under(prefix: &[&str], port: u16, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("healthd.log");
        let listener = format!("127.0.0.1:{port}");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["healthd", "--listener", &listener])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let h = Healthd {
            child,
            _dir: dir,
            log,
        };
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(&listener).is_ok()
        });
        assert!(up, "healthd did not listen:\n{}", h.logs());
        h
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM to `pid` (healthd itself, which may be a grandchild) and
    /// expect our child to exit with code 0 within 5 s.
    fn sigterm_exits_0(&mut self, pid: i32) {
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.wait_exit(Duration::from_secs(5));
        let logs = self.logs();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}\n{logs}");
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Healthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET / and return (status, body).
fn get(port: u16) -> (u16, String) {
    get_within(port, Duration::from_secs(20))
}

/// GET / waiting at most `limit` for the answer (status 0 without one).
fn get_within(port: u16, limit: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A script that counts its runs in `dir/runs` and takes 300 ms.
fn counting_script(dir: &std::path::Path) -> String {
    let path = dir.join("check.sh");
    let body = format!(
        "#!/bin/sh\necho x >> {}/runs\nsleep 0.3\nexit 0\n",
        dir.display()
    );
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn runs(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// 200 requests at once; every one must get `want`.
fn burst(port: u16, want: u16) {
    let threads: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || get(port).0))
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), want);
    }
}

#[test]
fn each_request_runs_every_check_without_singleflight() {
    let b = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let script = counting_script(dir.path());
    let port = free_port();
    let bport = b.addr.port().to_string();
    let _h = Healthd::start(port, &["--port", &bport, "--script", &script]);
    let (status, body) = get(port);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("PASS tcp 127.0.0.1:{bport}")),
        "{body}"
    );
    assert!(body.contains("PASS script"), "{body}");
    burst(port, 200);
    assert_eq!(runs(dir.path()), 201);
}

#[test]
fn singleflight_shares_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("{} --arg x", counting_script(dir.path()));
    let port = free_port();
    let _h = Healthd::start(
        port,
        &["--script", &script, "--singleflight", "--log-level", "info"],
    );
    burst(port, 200);
    let n = runs(dir.path());
    assert!(
        (1..=40).contains(&n),
        "{n} runs for 200 concurrent requests"
    );
}

/// tiny_http buffers a request head of any size before healthd sees the
/// request: one endless header line grew the process by its length.
#[test]
fn a_request_head_that_never_ends_is_cut() {
    let closed = free_port().to_string();
    let port = free_port();
    let _h = Healthd::start(port, &["--port", &closed]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nX: ").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let sent = (0..256).take_while(|_| s.write_all(&chunk).is_ok()).count();
    assert!(sent < 256, "256 MiB of one header line were taken in");
    assert_eq!(get(port).0, 504, "healthd still answers");
}

#[test]
fn a_failing_check_gives_504() {
    let closed = free_port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = counting_script(dir.path());
    let port = free_port();
    let _h = Healthd::start(port, &["--port", &closed, "--script", &script]);
    let (status, body) = get(port);
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains(&format!("FAIL tcp 127.0.0.1:{closed}")),
        "{body}"
    );
    assert!(body.contains("PASS script"), "{body}");
}

#[test]
fn a_request_declaring_a_huge_body_gets_413_and_healthd_lives() {
    let b = Backend::start("one");
    let port = free_port();
    let mut h = Healthd::start(port, &["--port", &b.line().replace("127.0.0.1:", "")]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999\r\n\r\nab")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert_eq!(h.wait_exit(Duration::from_millis(50)), None, "{}", h.logs());
    assert_eq!(get(port).0, 200, "{}", h.logs());
}

#[test]
fn a_hung_script_times_out_as_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hang.sh");
    std::fs::write(&path, "#!/bin/sh\nsleep 1000 &\nsleep 1000\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let p = path.display().to_string();
    let _h = Healthd::start(port, &["--script", &p, "--script-timeout", "1"]);
    let started = std::time::Instant::now();
    let (status, body) = get(port);
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("no result within 1s"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = run_cli(&["healthd", "--port", "nope"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run_cli(&["healthd"]);
    assert_eq!(code, 2);
}

#[test]
fn config_file_checks_of_any_kind() {
    let b = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let write = |name: &str, extra: &str| {
        let path = dir.path().join(name);
        let text = format!(
            "[healthd.checks.greeting]\naddress = \"{}\"\n[healthd.checks.greeting.healthcheck]\n\
             kind = \"probe\"\nprobe_protocol = \"tcp\"\nprobe_send = 'x'\nprobe_recv = 'a\\n'\ntimeout = \"2s\"\n{extra}",
            b.addr
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let good = write("good.toml", "");
    let bad = write(
        "bad.toml",
        &format!(
            "[healthd.checks.db]\naddress = \"127.0.0.1:{dead}\"\n[healthd.checks.db.healthcheck]\nkind = \"ping\"\ntimeout = \"1s\"\n"
        ),
    );
    let (p1, p2) = (free_port(), free_port());
    let _h1 = Healthd::start(p1, &["--config", &good]);
    let _h2 = Healthd::start(p2, &["-c", &bad]);
    let (status, body) = get(p1);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PASS greeting (probe"), "{body}");
    let (status, body) = get(p2);
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("FAIL db (ping"), "{body}");
    assert!(body.contains("PASS greeting"), "{body}");

    // A bad file: exit 2 with the key named.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[healthd.checks.x]\naddress = \"127.0.0.1:1\"\n").unwrap();
    let (code, _, err) = run_cli(&["healthd", "-c", &broken.display().to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("healthd.checks.x.healthcheck"), "{err}");
}

#[test]
fn sigterm_stops_it_with_exit_0() {
    let b = Backend::start("a");
    let port = free_port();
    let mut h = Healthd::start(port, &["--port", &b.addr.port().to_string()]);
    assert_eq!(get(port).0, 200);
    let pid = h.child.id() as i32;
    h.sigterm_exits_0(pid);
    assert!(h.logs().contains("SIGTERM: stopping"), "{}", h.logs());
}

/// In a container healthd is often PID 1, for which the kernel ignores
/// signals that have no handler: `docker stop` would wait out its timeout.
#[test]
fn sigterm_stops_it_as_pid_1() {
    let allowed = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!(
            "skipped: `unshare --pid --fork` is not permitted here (needs root and util-linux)"
        );
        return;
    }
    let b = Backend::start("a");
    let port = free_port();
    let prefix = ["unshare", "--pid", "--fork", "--kill-child"];
    let mut h = Healthd::start_under(&prefix, port, &["--port", &b.addr.port().to_string()]);
    let unshare = h.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "not PID 1 in its namespace: {nspid}"
    );
    h.sigterm_exits_0(pid);
}

#[test]
fn logs_each_checks_verdict_changes() {
    let port = free_port();
    let watched = free_port();
    let check = format!("tcp 127.0.0.1:{watched}");
    let h = Healthd::start(port, &["--port", &watched.to_string()]);
    assert_eq!(get(port).0, 504);
    assert_eq!(get(port).0, 504);
    let logs = h.logs();
    assert_eq!(logs.matches(&format!("{check}: FAIL")).count(), 1, "{logs}");
    assert!(logs.contains("[INFO]"), "{logs}");
    assert!(
        !logs.contains("evaluated"),
        "debug lines at info level:\n{logs}"
    );
    let _up = Backend::start_on("a", watched);
    assert_eq!(get(port).0, 200);
    assert!(
        h.logs().contains(&format!("{check}: FAIL -> PASS")),
        "{}",
        h.logs()
    );

    let dport = free_port();
    let d = Healthd::start(
        dport,
        &["--port", &watched.to_string(), "--log-level", "debug"],
    );
    assert_eq!(get(dport).0, 200);
    assert!(d.logs().contains("evaluated 1 checks: 200"), "{}", d.logs());

    let (code, _, err) = run_cli(&["healthd", "--port", "1", "--log-level", "debg"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean \"debug\""), "{err}");
}

/// A flood of requests without --singleflight: check processes are capped
/// (64 at once, across requests) and requests beyond 256 in flight get 503
/// at once instead of a thread each. The script blocks until the test lets
/// it go, so admitted requests stay in flight meanwhile.
#[test]
fn a_flood_is_bounded_in_processes_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (log, release) = (dir.path().join("log"), dir.path().join("release"));
    let path = dir.path().join("blocked.sh");
    let body = format!(
        "#!/bin/sh\necho + >> {0}\nwhile [ ! -e {1} ]; do sleep 0.05; done\n",
        log.display(),
        release.display()
    );
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let script = path.display().to_string();
    let _h = Healthd::start(port, &["--script", &script, "--script-timeout", "60"]);
    let started = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let flood: Vec<_> = (0..256)
        .map(|_| std::thread::spawn(move || get_within(port, Duration::from_secs(60)).0))
        .collect();
    assert!(wait_until(Duration::from_secs(20), || started() >= 64));
    // Held there: the other admitted requests wait for a process slot.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(started(), 64, "more than 64 scripts at once");
    // More requests until one is turned away: a probe that is admitted
    // (some of the flood may still be in the kernel's accept queue) stays
    // in flight too, so the count only grows until it reaches 256.
    let turned_away = wait_until(Duration::from_secs(40), || {
        get_within(port, Duration::from_millis(500)).0 == 503
    });
    std::fs::write(&release, "").unwrap();
    let statuses: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        turned_away,
        "no request beyond 256 in flight was turned away"
    );
    // Every admitted request was answered once the scripts could finish.
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
}

#[test]
fn a_config_file_check_without_timeout_is_cut_at_5s() {
    // Accepts (the kernel completes the handshake) but never answers.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    let text = format!(
        "[healthd.checks.mute]\naddress = \"{}\"\n[healthd.checks.mute.healthcheck]\n\
         kind = \"probe\"\nprobe_protocol = \"tcp\"\nprobe_send = 'x'\nprobe_recv = 'y'\n",
        mute.local_addr().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let port = free_port();
    let _h = Healthd::start(port, &["-c", &path.display().to_string()]);
    let started = std::time::Instant::now();
    let (status, body) = get_within(port, Duration::from_secs(15));
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("no result within 5s"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(7), "{body}");
}

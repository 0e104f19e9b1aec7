//! `exec` and `script` health checks through the real daemon: verdicts,
//! environment, temp files, group kills at the timeout, the global cap.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// A 0755 shell script at `path`.
fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn healthcheck(keys: &str) -> String {
    format!("[servers.test.healthcheck]\n{keys}\n")
}

/// Wait for a log line containing every part; panic with the log if none.
#[track_caller]
fn wait_log(b: &Betwixt, parts: &[&str]) {
    let found = wait_until(WAIT, || {
        b.logs()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    });
    assert!(found, "no log line with {parts:?}:\n{}", b.logs());
}

fn count_lines(b: &Betwixt, parts: &[&str]) -> usize {
    b.logs()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Every connection of `n` lands on `name`.
#[track_caller]
fn all_go_to(port: u16, name: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(who(port), name);
    }
}

#[test]
fn exec_positive_negative_and_unexpected_output() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = tempfile::tempdir().unwrap();
    let says = |be: &Backend, what: &str| {
        std::fs::write(dir.path().join(be.addr.port().to_string()), what).unwrap()
    };
    says(&a, "1");
    says(&b, "0");
    let cmd = dir.path().join("check");
    // Prints the file named after the port: "$1" is the host, "$2" the port.
    write_script(
        &cmd,
        &format!(
            "[ \"$1\" = 127.0.0.1 ] || exit 9\ncat {}/\"$2\"",
            dir.path().display()
        ),
    );
    let port = free_port();
    let extra = healthcheck(&format!(
        "kind = \"exec\"\ninterval = \"1s\"\ntimeout = \"900ms\"\nexec_command = \"{}\"\n\
         exec_expected_positive_output = \"1\"\nexec_expected_negative_output = \"0\"",
        cmd.display()
    ));
    let bx = Betwixt::start(
        &config(port, "roundrobin", &[a.line(), b.line()], &extra),
        &[port],
    );
    let (ka, kb) = (a.line(), b.line());
    wait_log(
        &bx,
        &[
            &format!("backend {kb} is down"),
            "exit_status: negative output",
        ],
    );
    all_go_to(port, "a", 10);

    // Unexpected output changes nothing: b stays down, a stays up.
    says(&b, "1\n");
    says(&a, "garbage");
    let seen = |k: &str| {
        count_lines(
            &bx,
            &[k, "matches neither expected output", "state unchanged"],
        )
    };
    assert!(
        wait_until(WAIT, || seen(&ka) >= 3 && seen(&kb) >= 3),
        "{}",
        bx.logs()
    );
    all_go_to(port, "a", 10);
    assert_eq!(
        count_lines(&bx, &[&format!("backend {ka} is down")]),
        0,
        "{}",
        bx.logs()
    );
    assert_eq!(
        count_lines(&bx, &[&format!("backend {kb} is up")]),
        0,
        "{}",
        bx.logs()
    );

    // Back to the positive output: b comes back.
    says(&b, "1");
    wait_log(&bx, &[&format!("backend {kb} is up"), "positive output"]);
}

/// Runs of a script that logs its environment and `$0`, and passes while
/// the file `ok.PORT` exists.
fn script_body(dir: &Path) -> String {
    format!(
        "echo \"$BETWIXT_HC_IP $BETWIXT_HC_PORT $NEXUS_HC_IP $NEXUS_HC_PORT $0\" >> {d}/runs\n\
         test -f {d}/ok.\"$BETWIXT_HC_PORT\"",
        d = dir.display()
    )
}

fn check_script_runs(keys: &str, dir: &Path, inline: bool) {
    let a = Backend::start("a");
    let ok = dir.join(format!("ok.{}", a.addr.port()));
    let port = free_port();
    let extra = healthcheck(&format!(
        "kind = \"script\"\ninterval = \"500ms\"\ntimeout = \"450ms\"\nfails = 2\n{keys}"
    ));
    let bx = Betwixt::start(&config(port, "roundrobin", &[a.line()], &extra), &[port]);
    let key = a.line();
    wait_log(
        &bx,
        &[&format!("backend {key} is down"), "exit_status: exit 1"],
    );
    std::fs::write(&ok, "").unwrap();
    wait_log(&bx, &[&format!("backend {key} is up"), "exit 0"]);
    assert_eq!(who(port), "a");

    let runs = std::fs::read_to_string(dir.join("runs")).unwrap();
    let mut files = Vec::new();
    for line in runs.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let p = a.addr.port().to_string();
        assert_eq!(
            f[..4],
            ["127.0.0.1", p.as_str(), "127.0.0.1", p.as_str()],
            "{line}"
        );
        files.push(PathBuf::from(f[4]));
    }
    assert!(files.len() >= 3);
    if inline {
        // Each run had its own private file, removed after the run.
        assert!(files.iter().all(|f| f.starts_with(std::env::temp_dir())));
        assert!(files.windows(2).all(|w| w[0] != w[1]));
        let gone = wait_until(WAIT, || {
            files
                .iter()
                .all(|f| !f.exists() && !f.parent().unwrap().exists())
        });
        assert!(gone, "inline script files left behind: {files:?}");
    }
}

#[test]
fn script_by_path_gets_the_target_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("check.sh");
    write_script(&path, &script_body(dir.path()));
    check_script_runs(
        &format!("script_path = \"{}\"", path.display()),
        dir.path(),
        false,
    );
}

#[test]
fn inline_script_runs_from_a_private_file_that_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let body = script_body(dir.path())
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    check_script_runs(&format!("script_content = \"{body}\""), dir.path(), true);
}

/// Non-zombie processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After "(comm)": state ppid pgrp ...
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

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    !matches!(state, None | Some("Z"))
}

#[test]
fn hung_script_is_killed_with_its_children_at_the_timeout() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let body = format!(
        "sleep 1000 &\necho \"$$ $!\" > {d}/pids.$$.tmp\nmv {d}/pids.$$.tmp {d}/pids.$$\nsleep 1000"
    );
    let path = dir.path().join("hang.sh");
    write_script(&path, &body);
    let port = free_port();
    let extra = healthcheck(&format!(
        "kind = \"script\"\ninterval = \"1s\"\ntimeout = \"300ms\"\nscript_path = \"{}\"",
        path.display()
    ));
    let bx = Betwixt::start(&config(port, "roundrobin", &[a.line()], &extra), &[port]);
    wait_log(
        &bx,
        &[
            &format!("backend {} is down", a.line()),
            "timeout: no result within 300ms",
        ],
    );
    // Wait for two runs to have been cut, then look at every process they started.
    let pidfiles = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("pids.")
                    && p.extension().is_none_or(|e| e != "tmp")
            })
            .collect()
    };
    assert!(wait_until(WAIT, || pidfiles().len() >= 2), "{}", bx.logs());
    let files = pidfiles();
    for f in &files[..files.len() - 1] {
        let text = std::fs::read_to_string(f).unwrap();
        let pids: Vec<i32> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (leader, child) = (pids[0], pids[1]);
        let dead = wait_until(Duration::from_secs(3), || {
            !alive(leader) && !alive(child) && group_members(leader).is_empty()
        });
        assert!(
            dead,
            "group {leader} survived its timeout: {:?}",
            group_members(leader)
        );
    }
}

#[test]
fn max_exec_checks_caps_concurrent_scripts() {
    let backends: Vec<Backend> = (0..6).map(|i| Backend::start(&format!("b{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("count"), "0").unwrap();
    std::fs::write(dir.path().join("max"), "0").unwrap();
    // A mkdir lock around a shared counter; the peak is kept in `max`.
    // Bounded: if the directory is gone (test over), give up instead of spinning.
    let lock = format!(
        "i=0; until mkdir {d}/lock 2>/dev/null; do i=$((i+1)); [ $i -gt 1000 ] && exit 1; sleep 0.005; done"
    );
    let body = format!(
        "{lock}\nn=$(( $(cat {d}/count) + 1 ))\necho $n > {d}/count\n\
         [ $n -gt $(cat {d}/max) ] && echo $n > {d}/max\nrmdir {d}/lock\n\
         sleep 0.3\n\
         {lock}\necho $(( $(cat {d}/count) - 1 )) > {d}/count\nrmdir {d}/lock\n\
         echo x >> {d}/runs\nexit 0"
    );
    let path = dir.path().join("slow.sh");
    write_script(&path, &body);
    let port = free_port();
    let lines: Vec<String> = backends.iter().map(Backend::line).collect();
    let extra = healthcheck(&format!(
        "kind = \"script\"\ninterval = \"2s\"\ntimeout = \"1900ms\"\nscript_path = \"{}\"",
        path.display()
    ));
    let cfg = format!(
        "[defaults]\nmax_exec_checks = 2\n{}",
        config(port, "roundrobin", &lines, &extra)
    );
    let bx = Betwixt::start(&cfg, &[port]);
    let runs = || {
        std::fs::read_to_string(dir.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || runs() >= 18),
        "{}",
        bx.logs()
    );
    let max: u32 = std::fs::read_to_string(dir.path().join("max"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(max, 2, "peak of concurrent scripts");
}

#[test]
fn exec_that_cannot_start_fails_with_spawn_error() {
    let a = Backend::start("a");
    let port = free_port();
    let extra = healthcheck(
        "kind = \"exec\"\ninterval = \"500ms\"\ntimeout = \"450ms\"\nexec_command = \"/nonexistent/betwixt-check\"",
    );
    let bx = Betwixt::start(&config(port, "roundrobin", &[a.line()], &extra), &[port]);
    wait_log(
        &bx,
        &[
            &format!("backend {} is down", a.line()),
            "spawn_error: /nonexistent/betwixt-check",
        ],
    );
}

/// Live processes whose command line is `sleep ARG`.
fn sleepers(arg: &str) -> Vec<i32> {
    let want = format!("sleep\0{arg}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.ends_with(want.as_bytes()) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// A daemon killed by SIGKILL cannot clean up: the kernel kills its running
/// check process for it (PR_SET_PDEATHSIG) instead of leaving it behind.
#[test]
fn a_running_check_dies_with_a_sigkilled_daemon() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    // A duration no other process uses: 900-999 s and this test's pid.
    let arg = format!("{}.{}", 900 + std::process::id() % 100, std::process::id());
    let path = dir.path().join("slow.sh");
    write_script(&path, &format!("exec sleep {arg}"));
    let port = free_port();
    let extra = healthcheck(&format!(
        "kind = \"script\"\ninterval = \"90s\"\ntimeout = \"60s\"\nscript_path = \"{}\"",
        path.display()
    ));
    let bx = Betwixt::start(&config(port, "roundrobin", &[a.line()], &extra), &[port]);
    assert!(
        wait_until(WAIT, || !sleepers(&arg).is_empty()),
        "the check never ran:\n{}",
        bx.logs()
    );
    bx.signal(libc::SIGKILL);
    let gone = wait_until(Duration::from_secs(5), || sleepers(&arg).is_empty());
    let left = sleepers(&arg);
    for pid in &left {
        // SAFETY: killing the leftover this test made.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(gone, "check process {left:?} outlived the daemon");
}

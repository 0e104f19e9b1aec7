//! Helpers for the discovery tests: the one-server config, waits on what a
//! port serves, test certificates or a skip, and for the tests that run a
//! real docker or lxd daemon: a private bridge, bounded CLI runs, process
//! group clean-up and mount detaching.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Betwixt, closed_without_data, connect, wait_until, who};

/// How long a wait on betwixt with loopback backends may take.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A debug-logging roundrobin server `test` on `port` whose
/// `[servers.test.discovery]` table is `discovery`.
pub fn discovery_config(port: u16, discovery: &str) -> String {
    format!(
        "[logging]\nlevel = \"debug\"\n\n[servers.test]\nbind = \"127.0.0.1:{port}\"\n\
         balance = \"roundrobin\"\n\n[servers.test.discovery]\n{discovery}\n"
    )
}

/// Wait (10 s) until new connections reach only `names` (all of them).
pub fn serves(port: u16, names: &[&str]) -> bool {
    wait_until(LIMIT, || reaches_only(port, names, false))
}

/// Wait (20 s) until new connections reach only the containers `names`
/// (all of them). A container serves one connection at a time (a `nc -l`
/// loop): a connection that lands between two `nc`s gets nothing and is
/// not counted.
pub fn containers_serve(port: u16, names: &[&str]) -> bool {
    wait_until(Duration::from_secs(20), || reaches_only(port, names, true))
}

/// Whether `4 * names.len()` connections reach exactly the set `names`.
fn reaches_only(port: u16, names: &[&str], skip_empty: bool) -> bool {
    let mut seen: Vec<String> = (0..names.len() * 4).map(|_| who(port)).collect();
    if skip_empty {
        seen.retain(|s| !s.is_empty());
    }
    seen.sort();
    seen.dedup();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    seen == want
}

/// Wait (10 s) until connections are closed without a backend.
pub fn serves_nothing(port: u16) -> bool {
    wait_until(LIMIT, || {
        let mut s = connect(port);
        closed_without_data(&mut s, Duration::from_secs(2))
    })
}

/// Wait (10 s) until the log of `bx` contains `text`.
pub fn logged(bx: &Betwixt, text: &str) -> bool {
    wait_until(LIMIT, || bx.logs().contains(text))
}

/// A fresh directory and what `make` builds in it (the test PKI), or
/// `None` after printing why the test skips.
pub fn certificates_or_skip<T>(
    make: impl FnOnce(&Path) -> Result<T, String>,
) -> Option<(tempfile::TempDir, T)> {
    let dir = tempfile::tempdir().unwrap();
    match make(dir.path()) {
        Ok(made) => Some((dir, made)),
        Err(e) => {
            eprintln!("SKIP: cannot make test certificates: {e}");
            None
        }
    }
}

/// Whether we are root and every path in `tools` exists; if not, prints
/// why `test` skips (naming the Debian `packages` to install).
pub fn root_with_tools(test: &str, tools: &[&str], packages: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: {test} needs root");
        return false;
    }
    for tool in tools {
        if !Path::new(tool).exists() {
            eprintln!("SKIP: {tool} missing (apt-get install {packages})");
            return false;
        }
    }
    true
}

/// Spawn `cmd` as the leader of a new process group, stdin from /dev/null,
/// stdout and stderr to a new file `log`.
pub fn spawn_in_group(cmd: &mut Command, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::File::create(log)?;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// A Linux bridge of our own (a daemon's `--bridge`), deleted on drop: the
/// daemon never touches docker0 or another daemon's bridge.
pub struct Bridge(pub String);

impl Bridge {
    pub fn create(name: &str, cidr: &str) -> Result<Bridge, String> {
        let _ = ip(&["link", "del", name]); // a leftover of a killed run
        ip(&["link", "add", name, "type", "bridge"])?;
        let b = Bridge(name.to_string());
        ip(&["addr", "add", cidr, "dev", name])?;
        ip(&["link", "set", name, "up"])?;
        Ok(b)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

/// Run `ip ARGS`; its stderr is the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run `program ARGS` with `envs`, killed after 60 s: its trimmed stdout,
/// or an error with the command, its exit status and stderr.
pub fn run_bounded(
    program: &str,
    args: &[&str],
    envs: &[(&str, &OsStr)],
) -> Result<String, String> {
    let out = Command::new("/usr/bin/timeout")
        .args(["-s", "KILL", "60", program])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let name = Path::new(program).file_name().unwrap_or_default();
        Err(format!(
            "{} {}: {} {}",
            name.to_string_lossy(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Wait up to `grace` for `child` (a process group leader) to exit, then
/// SIGKILL its process group, and reap it.
pub fn kill_group_after(child: &mut Child, grace: Duration) {
    let pid = child.id() as i32;
    let stopped = wait_until(grace, || matches!(child.try_wait(), Ok(Some(_))));
    // SAFETY: signalling the process group of our own child.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    if !stopped {
        let _ = child.wait();
    }
}

/// Lazily unmount every mount point below `dir` (deepest first).
pub fn detach_mounts_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: a valid C string; MNT_DETACH cannot hurt other mounts.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

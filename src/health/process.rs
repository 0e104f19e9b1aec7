//! Running a check's program: `exec` and `script` share this.
//!
//! - No shell: the program and its arguments are passed to `execve` as given.
//! - Its own process group (the child's pid is the group id). When the
//!   program exits, anything it left running in its group is killed
//!   (SIGKILL) before the exit is reaped, so the group id cannot be reused
//!   in between. When the future is dropped (the check's timeout in
//!   [`super::run`], or the daemon stopping the check), a [`Group`] guard
//!   kills the whole group and reaps the child.
//! - stdin is `/dev/null`; stdout and stderr are pipes that are drained to
//!   the end (so the program never blocks on a full pipe), keeping only the
//!   first [`OUTPUT_CAP`] bytes of each.
//! - Exit is awaited through a pidfd (Linux 5.3+), else by polling.
//! - If betwixt dies without cleaning up (SIGKILL, OOM kill), the kernel
//!   sends the program SIGKILL (`PR_SET_PDEATHSIG`). That reaches the
//!   program itself, not what it started in the background. Programs are
//!   only spawned from threads that live as long as their runtime (tokio
//!   workers, the main thread), since the signal follows the spawning
//!   thread's exit.

use std::ffi::OsString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::pin::pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use super::OUTPUT_CAP;

/// How long pipes may stay open after the group was killed. The group's
/// processes close them as they die, within milliseconds; only a process
/// that left the group (`setsid`) holds them longer, and the check must not
/// wait for it: this grace counts toward the check's timeout.
const PIPE_GRACE: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Send stderr into the stdout pipe (one interleaved capture).
    pub merge_stderr: bool,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    pub fn success(self) -> bool {
        self == Status::Exited(0)
    }

    /// `exit 2`, `killed by signal 9`.
    pub fn describe(self) -> String {
        match self {
            Status::Exited(n) => format!("exit {n}"),
            Status::Signaled(n) => format!("killed by signal {n}"),
        }
    }
}

/// A program that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub status: Status,
    /// At most the cap ([`OUTPUT_CAP`] for [`run`]).
    pub stdout: Vec<u8>,
    /// Bytes the program wrote to stdout (more than kept when cut).
    pub stdout_total: usize,
    /// At most the cap; empty with `merge_stderr`.
    pub stderr: Vec<u8>,
}

impl Finished {
    /// stdout then stderr, for [`super::Outcome::output`] (`None` if both empty).
    pub fn output(&self) -> Option<String> {
        if self.stdout.is_empty() && self.stderr.is_empty() {
            return None;
        }
        let mut all = self.stdout.clone();
        all.extend_from_slice(&self.stderr);
        Some(super::capture(&all))
    }
}

/// Run `inv` to its end, keeping [`OUTPUT_CAP`] bytes of each stream.
/// `Err` = it could not be started.
pub async fn run(inv: &Invocation) -> io::Result<Finished> {
    run_capped(inv, OUTPUT_CAP).await
}

/// [`run`], keeping up to `cap` bytes of each stream (the rest is read and
/// counted in [`Finished::stdout_total`], not kept).
pub async fn run_capped(inv: &Invocation, cap: usize) -> io::Result<Finished> {
    let (group, out, err) = spawn(inv)?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut totals = (0, 0);
    let status = {
        let mut reads = pin!(async {
            let (a, b) = tokio::join!(
                drain(out, &mut stdout, cap),
                drain_opt(err, &mut stderr, cap)
            );
            totals = (a, b);
        });
        let mut reads_done = false;
        let mut exit = pin!(wait_exit(group.pid));
        let exited = loop {
            tokio::select! {
                r = &mut exit => break r,
                _ = &mut reads, if !reads_done => reads_done = true,
            }
        };
        // The leader is a zombie now: its group id cannot be reused yet.
        group.kill();
        if !reads_done {
            let _ = tokio::time::timeout(PIPE_GRACE, &mut reads).await;
        }
        exited
    };
    let status = match status {
        Ok(()) => group.reap(),
        Err(e) => Err(e),
    }?;
    Ok(Finished {
        status,
        stdout,
        stdout_total: totals.0,
        stderr,
    })
}

type Pipes = (Group, pipe::Receiver, Option<pipe::Receiver>);

/// The child gets SIGKILL when the thread that spawned it exits (see the
/// module doc). Only async-signal-safe calls between fork and exec.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let hook = move || {
        // SAFETY: prctl and getppid are async-signal-safe syscalls; no
        // allocation happens here (errors are raw OS errors).
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // betwixt died before the prctl: nobody would send the signal.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(hook);
    }
}

fn spawn(inv: &Invocation) -> io::Result<Pipes> {
    let (out_r, out_w) = io::pipe()?;
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    die_with_parent(&mut cmd);
    let err_r = if inv.merge_stderr {
        cmd.stderr(out_w.try_clone()?);
        None
    } else {
        let (r, w) = io::pipe()?;
        cmd.stderr(w);
        Some(r)
    };
    cmd.stdout(out_w);
    let child = cmd.spawn()?;
    let group = Group {
        pid: child.id() as libc::pid_t,
        reaped: false,
    };
    // The write ends must close in this process, or EOF never comes.
    drop(cmd);
    let out = pipe::Receiver::from_owned_fd(OwnedFd::from(out_r))?;
    let err = match err_r {
        Some(r) => Some(pipe::Receiver::from_owned_fd(OwnedFd::from(r))?),
        None => None,
    };
    Ok((group, out, err))
}

/// Read to EOF, keeping the first `cap` bytes; returns the total.
async fn drain(mut rx: pipe::Receiver, keep: &mut Vec<u8>, cap: usize) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => {
                total += n;
                let room = cap.saturating_sub(keep.len());
                keep.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

async fn drain_opt(rx: Option<pipe::Receiver>, keep: &mut Vec<u8>, cap: usize) -> usize {
    match rx {
        Some(rx) => drain(rx, keep, cap).await,
        None => 0,
    }
}

/// Wait until `pid` has exited, without reaping it.
async fn wait_exit(pid: libc::pid_t) -> io::Result<()> {
    if let Some(fd) = pidfd(pid) {
        // Readable once the process has exited.
        let _ = fd.readable().await?;
        if exited(pid)? {
            return Ok(());
        }
    }
    loop {
        if exited(pid)? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pidfd(pid: libc::pid_t) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: an OwnedFd stays open and returns the same fd until dropped.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
}

/// Has `pid` exited? (`WNOWAIT`: it stays a zombie until [`Group::reap`].)
fn exited(pid: libc::pid_t) -> io::Result<bool> {
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a siginfo_t; the flags do not reap.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded; si_pid is 0 when the child has not exited.
    Ok(unsafe { info.si_pid() } != 0)
}

/// The child's process group; kills and reaps it unless [`Group::reap`] ran.
#[derive(Debug)]
struct Group {
    pid: libc::pid_t,
    reaped: bool,
}

impl Group {
    /// SIGKILL every process of the group.
    fn kill(&self) {
        if self.pid > 0 {
            // SAFETY: plain syscall; the group id is our unreaped child's pid.
            unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        }
    }

    /// Collect the exit status of the (already exited) leader.
    fn reap(mut self) -> io::Result<Status> {
        let mut status = 0;
        // SAFETY: valid pointer; the child has exited, so this does not block long.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(decode(status))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.kill();
        let pid = self.pid;
        let mut status = 0;
        // SAFETY: valid pointer; WNOHANG does not block.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            // Not dead yet (SIGKILL is being delivered): reap off this thread.
            let _ = std::thread::Builder::new()
                .name("reap".into())
                .spawn(move || {
                    let mut status = 0;
                    // SAFETY: valid pointer; blocks this helper thread only.
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                });
        }
    }
}

/// A `waitpid` status word as a [`Status`].
pub fn decode(status: libc::c_int) -> Status {
    if libc::WIFSIGNALED(status) {
        Status::Signaled(libc::WTERMSIG(status))
    } else {
        Status::Exited(libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, merge: bool) -> Invocation {
        Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("HC_TEST".into(), "v".into())],
            merge_stderr: merge,
        }
    }

    #[tokio::test]
    async fn captures_status_and_output() {
        let f = run(&sh("printf out; printf err >&2; exit 3", false))
            .await
            .unwrap();
        assert_eq!(f.status, Status::Exited(3));
        assert_eq!(f.stdout, b"out");
        assert_eq!(f.stderr, b"err");
        assert_eq!(f.output().as_deref(), Some("outerr"));
    }

    #[tokio::test]
    async fn merges_stderr_and_passes_env() {
        let f = run(&sh("echo $HC_TEST; echo e >&2", true)).await.unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout, b"v\ne\n");
        assert!(f.stderr.is_empty());
    }

    #[tokio::test]
    async fn output_is_capped_but_drained() {
        let f = run(&sh("head -c 1000000 /dev/zero", false)).await.unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout.len(), OUTPUT_CAP);
        assert_eq!(f.stdout_total, 1_000_000);
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_check() {
        let started = std::time::Instant::now();
        let f = run(&sh("sleep 30 & echo done", false)).await.unwrap();
        assert_eq!(f.stdout, b"done\n");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_child_that_left_the_group_holds_the_check_only_briefly() {
        let started = std::time::Instant::now();
        let f = run(&sh("setsid sleep 3 & echo done", false)).await.unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout, b"done\n");
        // PIPE_GRACE, not the escaped child's 3 s (nor the former 500 ms).
        let took = started.elapsed();
        assert!(took < Duration::from_millis(480), "{took:?}");
    }

    #[tokio::test]
    async fn signals_and_spawn_errors() {
        let f = run(&sh("kill -9 $$", false)).await.unwrap();
        assert_eq!(f.status, Status::Signaled(9));
        assert_eq!(f.status.describe(), "killed by signal 9");
        let missing = Invocation {
            program: "/nonexistent/betwixt-check".into(),
            args: vec![],
            env: vec![],
            merge_stderr: false,
        };
        assert!(run(&missing).await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 1000 & echo $! > {p}.tmp; echo $$ >> {p}.tmp; mv {p}.tmp {p}; sleep 1000",
            p = pids.display()
        );
        let inv = sh(&script, false);
        let r = tokio::time::timeout(Duration::from_secs(2), async {
            let run = run(&inv);
            let wait = async {
                while !pids.exists() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! { _ = run => {}, _ = wait => {} }
        })
        .await;
        assert!(r.is_err(), "the check should have been cut by the timeout");
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace() {
            let pid: libc::pid_t = pid.parse().unwrap();
            let gone = (0..200).any(|_| {
                // SAFETY: signal 0 only checks existence.
                let alive = unsafe { libc::kill(pid, 0) } == 0 && !zombie(pid);
                if alive {
                    std::thread::sleep(Duration::from_millis(10));
                }
                !alive
            });
            assert!(gone, "process {pid} survived");
        }
    }

    fn zombie(pid: libc::pid_t) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    }

    #[test]
    fn decodes_wait_status() {
        assert_eq!(decode(3 << 8), Status::Exited(3));
        assert_eq!(decode(9), Status::Signaled(9));
    }
}

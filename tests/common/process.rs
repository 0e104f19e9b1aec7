//! The betwixt process under test: start it on a config, signal, reload,
//! read its log; run one-shot CLI commands.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, wait_until};

/// A running betwixt process with its config and log in a temp dir.
pub struct Betwixt {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Betwixt {
    /// Start with a TOML config and wait until every `ports` accepts.
    pub fn start(config: &str, ports: &[u16]) -> Self {
        Self::start_with(config, "betwixt.toml", &[], ports)
    }

    pub fn start_with(config: &str, file: &str, args: &[&str], ports: &[u16]) -> Self {
        let mut b = Self::spawn(config, file, args, |_| {});
        for port in ports {
            let up = wait_until(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
            if !up {
                let _ = b.child.kill();
                panic!("betwixt did not listen on {port}:\n{}", b.logs());
            }
        }
        b
    }

    /// Start and wait for the "listening on 127.0.0.1:PORT" log lines, without
    /// opening any connection (so no backend sees a readiness probe).
    pub fn start_quiet(config: &str, ports: &[u16]) -> Self {
        let mut b = Self::spawn(config, "betwixt.toml", &[], |_| {});
        let binds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        b.wait_listening(&binds);
        b
    }

    /// Like [`Self::start_quiet`], with RLIMIT_NOFILE set to `nofile` in the child.
    pub fn start_limited(config: &str, ports: &[u16], nofile: u64) -> Self {
        let mut b = Self::spawn(config, "betwixt.toml", &[], move |cmd| {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: nofile as libc::rlim_t,
                        rlim_max: nofile as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        let binds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        b.wait_listening(&binds);
        b
    }

    /// Write the config to a private temp dir and spawn the binary on it
    /// (`-c PATH ARGS`), stdout and stderr going to the log file. `customize`
    /// may add environment variables, a `pre_exec` hook...
    pub fn spawn(
        config: &str,
        file: &str,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Self {
        Self::spawn_by(&[], config, file, args, customize)
    }

    /// [`Self::spawn`] with the binary run by `prefix`, e.g. `["ip",
    /// "netns", "exec", NS]` (which execs it: the child's pid is betwixt's).
    pub fn spawn_by(
        prefix: &[&str],
        config: &str,
        file: &str,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file);
        std::fs::write(&path, config).expect("write config");
        let log = dir.path().join("betwixt.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log clone");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.arg("-c")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        customize(&mut cmd);
        let child = cmd.spawn().expect("spawn betwixt");
        Self {
            child,
            dir,
            config: path,
            log,
        }
    }

    /// Wait (10 s) until the log has a "listening on BIND" line for each bind;
    /// panic with the log if the process exits or the time passes.
    pub fn wait_listening(&mut self, binds: &[String]) {
        let mut exited = None;
        let up = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return true;
            }
            let logs = self.logs();
            binds
                .iter()
                .all(|b| logs.contains(&format!("listening on {b}")))
        });
        if let Some(status) = exited {
            panic!(
                "betwixt exited ({status}) before listening:\n{}",
                self.logs()
            );
        }
        if !up {
            let _ = self.child.kill();
            panic!(
                "betwixt did not log listening on {binds:?}:\n{}",
                self.logs()
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True once the log contains `needle` (polled until `limit` passes).
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.logs().contains(needle))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Replace the config file and send SIGHUP; wait for the log to say how it went.
    pub fn reload(&self, config: &str) -> bool {
        let before = self.logs().matches("SIGHUP").count();
        std::fs::write(&self.config, config).expect("rewrite config");
        self.signal(libc::SIGHUP);
        let mut applied = false;
        let done = wait_until(Duration::from_secs(10), || {
            let logs = self.logs();
            let tail = logs.split("SIGHUP").nth(before + 1).unwrap_or("");
            applied = tail.contains("reload applied");
            applied || tail.contains("reload rejected")
        });
        assert!(done, "reload result not logged:\n{}", self.logs());
        applied
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Betwixt {
    /// SIGINT first (exit at once, but running check scripts are killed as
    /// groups on the way out, so none outlives the test), SIGKILL after 2 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGINT);
            if self.wait_exit(Duration::from_secs(2)).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Run `betwixt ARGS` to completion (bounded), returning (code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_env(args, &[])
}

/// [`run_cli`] with extra environment variables. A run longer than 10 s is
/// killed and reported as a panic (a CLI action must not hang).
pub fn run_cli_env(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run betwixt");
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                s = String::from_utf8_lossy(&buf).into_owned();
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "betwixt {args:?} still running after 10 s; stderr:\n{}",
            err.join().unwrap_or_default()
        );
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

//! Shared helpers for integration tests: run the real binary, real servers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_betwixt");

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Poll `f` every 10 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

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
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file);
        std::fs::write(&path, config).expect("write config");
        let log = dir.path().join("betwixt.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log clone");
        let child = Command::new(BIN)
            .arg("-c")
            .arg(&path)
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn betwixt");
        let mut b = Self {
            child,
            dir,
            config: path,
            log,
        };
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

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `betwixt ARGS` to completion (bounded), returning (code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run betwixt");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP backend that greets each connection with `NAME\n`, then echoes
/// until the client half-closes, then closes.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(name: &str) -> Self {
        Self::start_on(name, 0)
    }

    pub fn start_on(name: &str, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("backend bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s, nm) = (Arc::clone(&accepted), Arc::clone(&stop), name.to_string());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        n.fetch_add(1, Ordering::Relaxed);
                        let nm = nm.clone();
                        std::thread::spawn(move || echo(stream, &nm));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            name: name.to_string(),
            addr,
            accepted,
            stop,
        }
    }

    pub fn line(&self) -> String {
        format!("{}", self.addr)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn echo(mut stream: TcpStream, name: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.write_all(format!("{name}\n").as_bytes());
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

/// Connect through the proxy and return the greeting line (the backend name).
pub fn who(port: u16) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to betwixt");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    line.trim().to_string()
}

/// A minimal config with one server on `port` and the given static lines.
pub fn config(port: u16, balance: &str, lines: &[String], extra: &str) -> String {
    let list = lines
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[logging]\nlevel = \"debug\"\n\n[servers.test]\nbind = \"127.0.0.1:{port}\"\nbalance = \"{balance}\"\n{extra}\n[servers.test.discovery]\nkind = \"static\"\nstatic_list = [{list}]\n"
    )
}

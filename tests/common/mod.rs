//! Shared helpers for integration tests: run the real binary, real servers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod discovery;
pub mod http;
pub mod root;

pub const BIN: &str = env!("CARGO_BIN_EXE_betwixt");

/// A loopback port free for both TCP and UDP, picked at random below the
/// kernel's ephemeral range (32768+), so that client sockets (tests open
/// thousands) can never be handed the port between this call and the bind
/// by betwixt.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::net::UdpSocket;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    for _ in 0..10_000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(NEXT.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
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
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file);
        std::fs::write(&path, config).expect("write config");
        let log = dir.path().join("betwixt.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log clone");
        let mut cmd = Command::new(BIN);
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
        Self::start_at(name, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// A backend listening on `addr` (e.g. `[::1]:0`).
    pub fn start_at(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).expect("backend bind");
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

    /// Stop and wait (5 s) until connecting to the backend is refused.
    pub fn stop_refusing(&self) {
        self.stop();
        let gone = wait_until(Duration::from_secs(5), || {
            TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err()
        });
        assert!(gone, "backend {} still accepts after stop", self.name);
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
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    line.trim().to_string()
}

/// A minimal config with one server on `port` and the given static lines.
pub fn config(port: u16, balance: &str, lines: &[String], extra: &str) -> String {
    let server = server_section("test", port, balance, lines, extra);
    format!("[logging]\nlevel = \"debug\"\n\n{server}")
}

/// A `[servers.NAME]` section on 127.0.0.1:`port` with a static list and
/// the `extra` keys; sections can be concatenated into one config.
pub fn server_section(
    name: &str,
    port: u16,
    balance: &str,
    lines: &[String],
    extra: &str,
) -> String {
    let list = lines
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\nbalance = \"{balance}\"\n{extra}\n\
         [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{list}]\n"
    )
}

/// A listener on 127.0.0.1:0 whose first connection (timeouts set) goes to
/// `serve` on a thread; `serve`'s result comes on the receiver. Keep the
/// listener for as long as the backend is needed.
pub fn serve_once<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (TcpListener, SocketAddr, std::sync::mpsc::Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let l = listener.try_clone().expect("clone");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        set_timeouts(&s);
        let _ = tx.send(serve(s));
    });
    (listener, addr, rx)
}

/// Timeout used on every client socket read/write in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect to betwixt on 127.0.0.1:`port` with read/write timeouts set.
pub fn connect(port: u16) -> TcpStream {
    connect_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Connect to `addr` (bounded) with read/write timeouts set.
pub fn connect_addr(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    set_timeouts(&s);
    s
}

/// Connect to betwixt on 127.0.0.1:`port` from the local address `src`
/// (any 127.0.0.0/8 address works on loopback).
pub fn connect_from(src: IpAddr, port: u16) -> TcpStream {
    let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(dst),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket
        .bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    socket
        .connect_timeout(&dst.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {src} -> {dst}: {e}"));
    let s: TcpStream = socket.into();
    set_timeouts(&s);
    s
}

pub fn set_timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
}

/// Read one `\n`-terminated line byte by byte (so nothing after it is
/// consumed); "" on EOF, error or timeout before any newline.
pub fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 1024 {
        match s.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return String::from_utf8_lossy(&line).into_owned(),
            Ok(1) => line.push(byte[0]),
            _ => return String::new(),
        }
    }
    String::new()
}

/// The greeting (backend name) of a connection from `src`.
pub fn who_from(src: IpAddr, port: u16) -> String {
    read_line(&mut connect_from(src, port))
}

/// `127.0.0.N`.
pub fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Read until EOF (bounded by the socket's read timeout).
pub fn read_to_eof(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// True if the peer closes (EOF or reset) without sending a single byte
/// within `limit`; false if any byte arrives or the connection stays open.
pub fn closed_without_data(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).expect("read timeout");
    let mut buf = [0u8; 64];
    let closed = match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    };
    set_timeouts(s);
    closed
}

/// Write `data`, half-close, and return everything read until EOF.
pub fn exchange(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown write");
    read_to_eof(s).expect("read to EOF")
}

/// A deterministic byte stream that cannot be mistaken for another seed's
/// or for a shifted copy of itself within a period: byte `i` is
/// `(i mod 251) ^ seed`. Slices come from a precomputed table (fast in
/// debug builds).
pub struct Pattern {
    table: Vec<u8>,
}

impl Pattern {
    pub const PERIOD: usize = 251;
    /// Longest slice [`Self::at`] can return.
    pub const MAX_SLICE: usize = 256 * 1024;

    pub fn new(seed: u8) -> Self {
        let table = (0..Self::PERIOD + Self::MAX_SLICE)
            .map(|i| (i % Self::PERIOD) as u8 ^ seed)
            .collect();
        Self { table }
    }

    /// The `len` bytes starting at stream offset `pos` (`len <= MAX_SLICE`).
    pub fn at(&self, pos: u64, len: usize) -> &[u8] {
        let start = (pos % Self::PERIOD as u64) as usize;
        &self.table[start..start + len]
    }

    /// Write `total` bytes of the pattern; returns the count written.
    pub fn write(&self, w: &mut impl Write, total: u64) -> std::io::Result<u64> {
        let mut pos = 0u64;
        while pos < total {
            let n = (total - pos).min(64 * 1024) as usize;
            w.write_all(self.at(pos, n))?;
            pos += n as u64;
        }
        Ok(pos)
    }

    /// Read to EOF checking every byte; returns the byte count, or an error
    /// naming the first offset that differs.
    pub fn verify(&self, r: &mut impl Read) -> Result<u64, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = 0u64;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| format!("read error after {pos} bytes: {e}"))?;
            if n == 0 {
                return Ok(pos);
            }
            let want = self.at(pos, n);
            if buf[..n] != *want {
                let i = buf[..n]
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(format!("byte {} differs", pos + i as u64));
            }
            pos += n as u64;
        }
    }
}

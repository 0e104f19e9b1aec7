//! Shared helpers for integration tests: run the real binary, real servers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod discovery;
pub mod http;
mod process;
pub mod root;

pub use process::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_betwixt");

/// A loopback port free for both TCP and UDP, below the kernel's ephemeral
/// range (32768+), so that client sockets (tests open thousands) can never
/// be handed the port between this call and the bind by betwixt.
///
/// Ports are handed out in turn from an offset that depends on the process
/// id, so no two calls in one test binary (whose tests run in parallel)
/// return the same port: a port a test keeps closed on purpose is not
/// opened by another test. Test binaries run one after another.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::net::UdpSocket;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as usize
    });
    for _ in 0..12_000 {
        let port = 20_000 + ((base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
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

/// A DNS A query for `name` with id 0x1234 (recursion desired).
pub fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

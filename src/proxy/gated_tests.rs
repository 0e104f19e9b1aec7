//! Gating failures with real loopback sockets and the real BPF object: the
//! pair must leave every map, and the userspace relay must then carry every
//! byte (those that arrived before gating and those the kernel already
//! moved) and the half-close. They need CAP_BPF + CAP_NET_ADMIN (or
//! CAP_SYS_ADMIN) and skip with the reason without them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{Gated, Loaded, PairCookies, cookie, gate_pair, received, tcp_info};
use crate::metrics::Counters;
use crate::proxy::pump::{End, Relay};

const LIMIT: Duration = Duration::from_secs(10);
const CLOSE_WAIT: u8 = 8;

/// The BPF object loaded for this test, or `None` (reason printed) when the
/// process may not load it.
fn load() -> Option<Loaded> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let (net_admin, sys_admin, bpf) = (12, 21, 39);
    if !(has(sys_admin) || has(bpf) && has(net_admin)) {
        eprintln!("skipped: no CAP_BPF + CAP_NET_ADMIN (CapEff {eff:#x})");
        return None;
    }
    Some(Loaded::load().expect("with the capabilities the object loads"))
}

/// A proxied connection on loopback: `client` and `backend` are the far
/// ends, `socks` the proxy's two sockets (client side, backend side).
struct Line {
    client: StdStream,
    backend: StdStream,
    socks: [StdStream; 2],
}

impl Line {
    fn new() -> Self {
        let front = TcpListener::bind("127.0.0.1:0").expect("bind");
        let back = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = StdStream::connect(front.local_addr().expect("addr")).expect("connect");
        let (near, _) = front.accept().expect("accept");
        let far = StdStream::connect(back.local_addr().expect("addr")).expect("connect");
        let (backend, _) = back.accept().expect("accept");
        for s in [&client, &backend] {
            s.set_read_timeout(Some(LIMIT)).expect("timeout");
        }
        Self {
            client,
            backend,
            socks: [near, far],
        }
    }

    fn fds(&self) -> [i32; 2] {
        self.socks.each_ref().map(|s| s.as_raw_fd())
    }

    fn cookies(&self) -> PairCookies {
        PairCookies(self.fds().map(|fd| cookie(fd).expect("cookie")))
    }
}

/// Wait (bounded, polling: no event says "state changed") until `ok`.
#[track_caller]
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn read_to_end(mut s: StdStream) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read to EOF");
        all
    })
}

/// Relay the pair in userspace as the daemon does after a fallback while the
/// client sends `more` and its FIN; returns what the client then reads up to
/// EOF and what `backend` (reading the backend to EOF) returns.
async fn relay_rest(
    mut client: StdStream,
    socks: [StdStream; 2],
    backend: JoinHandle<Vec<u8>>,
    more: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let [near, far] = socks.map(|s| {
        s.set_nonblocking(true).expect("nonblocking");
        TcpStream::from_std(s).expect("tokio stream")
    });
    client.write_all(more).expect("write");
    client.shutdown(Shutdown::Write).expect("shutdown");
    let got_client = read_to_end(client);
    let counters = Counters::default();
    let relay = Relay {
        client: &near,
        backend: &far,
        client_idle: None,
        backend_idle: None,
        counters: [&counters, &counters],
        low_rtt_tuning: false,
    };
    let end = tokio::time::timeout(LIMIT, relay.run(std::future::pending()))
        .await
        .expect("the relay ends");
    assert!(matches!(end, Ok(End::Done)), "{end:?}");
    drop((near, far));
    let client = got_client.join().expect("client");
    (client, backend.join().expect("backend"))
}

fn state(fd: i32) -> u8 {
    tcp_info(fd).map(|i| i.tcpi_state).unwrap_or(0)
}

/// The backend's FIN arrived before gating: the backend socket is no longer
/// ESTABLISHED and its `socks` insert fails after the client's succeeded.
#[tokio::test]
async fn backend_fin_before_gating_undoes_the_client_and_falls_back() {
    let Some(fast) = load() else { return };
    let mut line = Line::new();
    let fds = line.fds();
    line.client.write_all(b"early-up").expect("write");
    line.backend.write_all(b"banner").expect("write");
    line.backend.shutdown(Shutdown::Write).expect("shutdown");
    wait_for("the client's bytes", || received(fds[0]).unwrap_or(0) >= 8);
    wait_for("CLOSE_WAIT", || state(fds[1]) == CLOSE_WAIT);
    let cookies = line.cookies();
    match gate_pair(&fast, fds, || {}).await {
        Gated::Fallback(why) => assert!(why.contains("socks insert"), "{why}"),
        Gated::On(..) => panic!("a CLOSE_WAIT socket was gated"),
        Gated::Failed(why) => panic!("failed: {why}"),
    }
    assert_eq!(fast.holding(cookies), Vec::<&str>::new());
    let backend = read_to_end(line.backend);
    let (client, backend) = relay_rest(line.client, line.socks, backend, b"-more").await;
    assert_eq!(client, b"banner");
    assert_eq!(backend, b"early-up-more");
}

/// The client was gated and its verdict moved bytes to the backend socket
/// before the backend's gate insert failed (its FIN came in between). The
/// backend reads nothing yet, so most of them still wait in the backend
/// socket's psock, which goes with the maps: they must leave first. Then
/// the userspace relay carries the rest in order, and the banner and FIN.
#[tokio::test]
async fn partial_gating_lets_moved_bytes_leave_then_falls_back() {
    const BULK: usize = 16 << 20;
    let Some(fast) = load() else { return };
    let mut line = Line::new();
    let fds = line.fds();
    line.client.write_all(b"early-up").expect("write");
    line.backend.write_all(b"banner").expect("write");
    wait_for("the client's bytes", || received(fds[0]).unwrap_or(0) >= 8);
    wait_for("the banner", || received(fds[1]).unwrap_or(0) >= 6);
    let cookies = line.cookies();
    let bulk: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let mut reader = None;
    let between = || {
        // Only the client socket is gated: its verdict moves all of it.
        let mut w = line.client.try_clone().expect("clone");
        let data = bulk.clone();
        std::thread::spawn(move || w.write_all(&data).expect("write"))
            .join()
            .expect("writer");
        wait_for("the bulk", || {
            received(fds[0]).unwrap_or(0) >= 8 + BULK as u64
        });
        line.backend.shutdown(Shutdown::Write).expect("shutdown");
        wait_for("CLOSE_WAIT", || state(fds[1]) == CLOSE_WAIT);
        // The backend reads only after the pair would have left the maps
        // without waiting for the moved bytes.
        let backend = line.backend.try_clone().expect("clone");
        reader = Some(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            read_to_end(backend).join().expect("backend")
        }));
    };
    match gate_pair(&fast, fds, between).await {
        Gated::Fallback(why) => assert!(why.contains("gate insert"), "{why}"),
        Gated::On(..) => panic!("a CLOSE_WAIT socket was gated"),
        Gated::Failed(why) => panic!("failed: {why}"),
    }
    assert_eq!(fast.holding(cookies), Vec::<&str>::new());
    let reader = reader.expect("the hook ran");
    let (client, backend) = relay_rest(line.client, line.socks, reader, b"+after").await;
    assert_eq!(client, b"banner");
    assert_eq!(backend.len(), 8 + BULK + 6, "bytes the backend got");
    assert!(backend.starts_with(b"early-up") && backend.ends_with(b"+after"));
    assert!(backend[8..8 + BULK] == bulk[..], "the bulk arrived intact");
}

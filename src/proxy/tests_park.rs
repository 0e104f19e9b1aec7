//! In-process tests of parking: the real accept loop and session on
//! loopback, a connection left idle until it is parked, then woken or closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{MutexGuard, watch};

use super::park::parked;
use super::tcp;
use super::tests::send_then_fin;
use crate::discovery::static_list::parse_line;
use crate::state::fixtures::test_server;
use crate::state::{Plan, ServerRuntime};

/// The lot is process-wide: parking tests run one at a time so that
/// `parked()` counts only the current test's connection.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tests keep the rig whole (`r.client`, ...) rather than destructure it
/// with `..`, which would drop `_serial` and `_stop` at once.
struct Rig {
    client: TcpStream,
    backend: TcpStream,
    server: Arc<ServerRuntime>,
    _stop: watch::Sender<bool>,
    /// Dropped last: the test holds the lot until its sockets are gone.
    _serial: MutexGuard<'static, ()>,
}

/// client -> [betwixt accept loop] -> backend, one connection, not yet
/// parked; the rig holds `SERIAL` for as long as it lives.
async fn rig(client_idle: Option<Duration>) -> Rig {
    let serial = SERIAL.lock().await;
    let backends = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let line = format!("127.0.0.1:{}", backends.local_addr().expect("addr").port());
    let mut cfg = test_server("127.0.0.1:0");
    cfg.client_idle_timeout = client_idle;
    let plan = Plan::new(Arc::new(cfg), &[parse_line(&line).expect("line")], None);
    let server = Arc::new(ServerRuntime::new("park".into(), plan));
    let listener = tcp::bind("127.0.0.1:0".parse().expect("addr")).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = watch::channel(false);
    let edge = Arc::new(super::tls::Edge::default());
    tokio::spawn(tcp::serve(listener, Arc::clone(&server), edge, rx));
    let client = TcpStream::connect(addr).await.expect("connect");
    let (backend, _) = within(backends.accept()).await.expect("accept");
    Rig {
        client,
        backend,
        server,
        _stop: stop,
        _serial: serial,
    }
}

/// A rig (no idle timeout) whose connection is parked after one exchange.
async fn parked_rig() -> Rig {
    let mut r = rig(None).await;
    exchange(&mut r.client, &mut r.backend, b"a", b"b").await;
    parked_is(1).await;
    r
}

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded")
}

/// Wait until `n` connections are parked.
async fn parked_is(n: usize) {
    within(async {
        while parked() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// `from` sends `msg` and `to` receives exactly it.
async fn pass(from: &mut TcpStream, to: &mut TcpStream, msg: &[u8]) {
    from.write_all(msg).await.expect("write");
    let mut got = vec![0u8; msg.len()];
    within(to.read_exact(&mut got)).await.expect("read");
    assert_eq!(got, msg);
}

async fn exchange(client: &mut TcpStream, backend: &mut TcpStream, up: &[u8], down: &[u8]) {
    pass(client, backend, up).await;
    pass(backend, client, down).await;
}

async fn closed(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let r = within(s.read_to_end(&mut rest)).await;
    assert!(r.is_err() || rest.is_empty(), "unexpected bytes {rest:?}");
}

/// The connection was ended by betwixt: it is no longer open, both ends are
/// closed without further bytes, and nothing is left parked.
async fn ended(r: &mut Rig) {
    within(r.server.tracker.idle()).await;
    closed(&mut r.client).await;
    closed(&mut r.backend).await;
    assert_eq!(parked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_resumes_both_ways_and_parks_again() {
    let mut r = rig(None).await;
    exchange(&mut r.client, &mut r.backend, b"hello", b"world").await;
    parked_is(1).await;
    assert_eq!(r.server.tracker.open(), 1, "parked is still open");
    exchange(
        &mut r.client,
        &mut r.backend,
        b"from client",
        b"from backend",
    )
    .await;
    parked_is(1).await;
    // The backend speaks first this time.
    pass(&mut r.backend, &mut r.client, b"push").await;
    // Bytes are counted just after they are sent: wait for the last count.
    within(async {
        loop {
            let s = r.server.counters.snapshot();
            if (s.tx_total, s.rx_total) == (16, 21) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(r.client);
    closed(&mut r.backend).await;
    parked_is(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_is_closed_by_its_idle_timeout() {
    // Parked 500 ms (PARK_AFTER) after the exchange, due 1,100 ms later:
    // not a multiple of the 250 ms backstop sweep, which starts at the park.
    let idle = Duration::from_millis(1600);
    let mut r = rig(Some(idle)).await;
    let start = Instant::now();
    exchange(&mut r.client, &mut r.backend, b"a", b"b").await;
    let quiet = Instant::now();
    parked_is(1).await;
    closed(&mut r.client).await;
    closed(&mut r.backend).await;
    assert!(
        start.elapsed() >= idle,
        "closed early: {:?}",
        start.elapsed()
    );
    // At its deadline, not at the next backstop sweep (up to 250 ms later):
    // 100 ms of slack for the coarse clock and a busy machine.
    let late = quiet.elapsed().saturating_sub(idle);
    assert!(late < Duration::from_millis(100), "closed {late:?} late");
    parked_is(0).await;
    within(r.server.tracker.idle()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_is_closed_by_a_drain_kill() {
    let mut r = rig(None).await;
    // No byte ever crossed: a fresh socket's first readiness can be spurious,
    // and such a connection must park too.
    parked_is(1).await;
    let t = Instant::now();
    r.server.tracker.kill_all();
    ended(&mut r).await;
    // At once, not at the next backstop sweep (up to 250 ms later).
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_is_closed_when_its_backend_goes_down() {
    let mut r = parked_rig().await;
    let t = Instant::now();
    r.server.plan().backends[0].state.close_connections();
    ended(&mut r).await;
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_while_parked_is_passed_on() {
    let mut r = parked_rig().await;
    within(send_then_fin(&mut r.client, &mut r.backend, b"last words")).await;
    within(send_then_fin(
        &mut r.backend,
        &mut r.client,
        b"reply after FIN",
    ))
    .await;
    within(r.server.tracker.idle()).await;
    assert_eq!(parked(), 0);
}

//! In-process tests of parking: the real accept loop and session on
//! loopback, a connection left idle until it is parked, then woken or closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::park::parked;
use super::tcp;
use crate::discovery::static_list::parse_line;
use crate::state::fixtures::test_server;
use crate::state::{Plan, ServerRuntime};

/// The lot is process-wide: parking tests run one at a time so that
/// `parked()` counts only the current test's connection.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Rig {
    client: TcpStream,
    backend: TcpStream,
    server: Arc<ServerRuntime>,
    _stop: watch::Sender<bool>,
}

/// client -> [betwixt accept loop] -> backend, one connection, not yet parked.
async fn rig(client_idle: Option<Duration>) -> Rig {
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
    }
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

async fn exchange(client: &mut TcpStream, backend: &mut TcpStream, up: &[u8], down: &[u8]) {
    client.write_all(up).await.expect("client write");
    let mut got = vec![0u8; up.len()];
    within(backend.read_exact(&mut got))
        .await
        .expect("backend read");
    assert_eq!(got, up);
    backend.write_all(down).await.expect("backend write");
    let mut got = vec![0u8; down.len()];
    within(client.read_exact(&mut got))
        .await
        .expect("client read");
    assert_eq!(got, down);
}

async fn closed(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let r = within(s.read_to_end(&mut rest)).await;
    assert!(r.is_err() || rest.is_empty(), "unexpected bytes {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_resumes_both_ways_and_parks_again() {
    let _serial = SERIAL.lock().await;
    let Rig {
        mut client,
        mut backend,
        server,
        ..
    } = rig(None).await;
    exchange(&mut client, &mut backend, b"hello", b"world").await;
    parked_is(1).await;
    assert_eq!(server.tracker.open(), 1, "parked is still open");
    exchange(&mut client, &mut backend, b"from client", b"from backend").await;
    parked_is(1).await;
    // The backend speaks first this time.
    backend.write_all(b"push").await.expect("push");
    let mut got = [0u8; 4];
    within(client.read_exact(&mut got)).await.expect("read");
    assert_eq!(&got, b"push");
    // Bytes are counted just after they are sent: wait for the last count.
    within(async {
        loop {
            let s = server.counters.snapshot();
            if (s.tx_total, s.rx_total) == (16, 21) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(client);
    closed(&mut backend).await;
    parked_is(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_is_closed_by_its_idle_timeout() {
    let _serial = SERIAL.lock().await;
    let idle = Duration::from_millis(1500);
    let Rig {
        mut client,
        mut backend,
        server,
        ..
    } = rig(Some(idle)).await;
    let start = Instant::now();
    exchange(&mut client, &mut backend, b"a", b"b").await;
    parked_is(1).await;
    closed(&mut client).await;
    closed(&mut backend).await;
    assert!(
        start.elapsed() >= idle,
        "closed early: {:?}",
        start.elapsed()
    );
    parked_is(0).await;
    within(server.tracker.idle()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_is_closed_by_a_drain_kill() {
    let _serial = SERIAL.lock().await;
    let Rig {
        mut client,
        mut backend,
        server,
        ..
    } = rig(None).await;
    // No byte ever crossed: a fresh socket's first readiness can be spurious,
    // and such a connection must park too.
    parked_is(1).await;
    server.tracker.kill_all();
    within(server.tracker.idle()).await;
    closed(&mut client).await;
    closed(&mut backend).await;
    assert_eq!(parked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connection_is_closed_when_its_backend_goes_down() {
    let _serial = SERIAL.lock().await;
    let Rig {
        mut client,
        mut backend,
        server,
        ..
    } = rig(None).await;
    exchange(&mut client, &mut backend, b"a", b"b").await;
    parked_is(1).await;
    server.plan().backends[0].state.close_connections();
    within(server.tracker.idle()).await;
    closed(&mut client).await;
    closed(&mut backend).await;
    assert_eq!(parked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_while_parked_is_passed_on() {
    let _serial = SERIAL.lock().await;
    let Rig {
        mut client,
        mut backend,
        server,
        ..
    } = rig(None).await;
    exchange(&mut client, &mut backend, b"a", b"b").await;
    parked_is(1).await;
    client.write_all(b"last words").await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    within(backend.read_to_end(&mut got))
        .await
        .expect("backend sees EOF");
    assert_eq!(got, b"last words");
    backend.write_all(b"reply after FIN").await.expect("reply");
    backend.shutdown().await.expect("backend FIN");
    let mut reply = Vec::new();
    within(client.read_to_end(&mut reply)).await.expect("reply");
    assert_eq!(reply, b"reply after FIN");
    within(server.tracker.idle()).await;
    assert_eq!(parked(), 0);
}

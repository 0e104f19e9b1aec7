//! In-process tests of the relay: real sockets on loopback, no binary.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::pump::{End, Relay};
use crate::metrics::Counters;

/// A connected (ours, theirs) pair on loopback.
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
    (a.expect("connect"), b.expect("accept").0)
}

struct Rig {
    client: TcpStream,
    backend: TcpStream,
    task: tokio::task::JoinHandle<std::io::Result<End>>,
    counters: std::sync::Arc<Counters>,
}

/// client <-> [relay] <-> backend, with the relay in a task.
async fn rig(client_idle: Option<Duration>, backend_idle: Option<Duration>) -> Rig {
    let (client, proxy_client) = pair().await;
    let (proxy_backend, backend) = pair().await;
    let counters = std::sync::Arc::new(Counters::default());
    let c2 = std::sync::Arc::clone(&counters);
    let task = tokio::spawn(async move {
        let other = Counters::default();
        Relay {
            client: &proxy_client,
            backend: &proxy_backend,
            client_idle,
            backend_idle,
            counters: [&c2, &other],
            low_rtt_tuning: true,
        }
        .run(std::future::pending())
        .await
    });
    Rig {
        client,
        backend,
        task,
        counters,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("bounded")
}

/// `from` sends `msg` and then its FIN; `to` reads exactly `msg` up to that
/// end of stream. Unbounded: callers wrap it in their `within`.
pub(super) async fn send_then_fin(from: &mut TcpStream, to: &mut TcpStream, msg: &[u8]) {
    from.write_all(msg).await.expect("send");
    from.shutdown().await.expect("FIN");
    let mut got = Vec::new();
    to.read_to_end(&mut got).await.expect("read to the FIN");
    let head = String::from_utf8_lossy(&got[..got.len().min(64)]);
    assert!(
        got == msg,
        "sent {} bytes, got {}: {head:?}",
        msg.len(),
        got.len()
    );
}

/// Send `data` and then a FIN on `s` while reading what arrives up to the
/// peer's FIN.
async fn send_while_receiving(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(data).await.expect("write");
        w.shutdown().await.expect("shutdown");
    };
    let mut got = Vec::new();
    let (_, n) = tokio::join!(send, r.read_to_end(&mut got));
    n.expect("read");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_arrives_intact_and_is_counted() {
    let Rig {
        mut client,
        mut backend,
        task,
        counters,
    } = rig(None, None).await;
    let up = pattern(8 << 20);
    let down = pattern(3 << 20);
    let (client_got, backend_got) = within(async {
        tokio::join!(
            send_while_receiving(&mut client, &up),
            send_while_receiving(&mut backend, &down)
        )
    })
    .await;
    assert!(backend_got == up, "upload intact");
    assert!(client_got == down, "download intact");
    assert_eq!(within(task).await.expect("join").expect("relay"), End::Done);
    let s = counters.snapshot();
    assert_eq!(
        (s.tx_total, s.rx_total),
        (up.len() as u64, down.len() as u64)
    );
}

#[tokio::test]
async fn client_half_close_reaches_backend_and_reply_still_arrives() {
    let mut r = rig(None, None).await;
    within(send_then_fin(&mut r.client, &mut r.backend, b"request")).await;
    // The backend replies and closes the socket (not just its write side).
    r.backend
        .write_all(b"reply after EOF")
        .await
        .expect("reply");
    drop(r.backend);
    let mut reply = Vec::new();
    within(r.client.read_to_end(&mut reply))
        .await
        .expect("client read");
    assert_eq!(reply, b"reply after EOF");
    assert_eq!(
        within(r.task).await.expect("join").expect("relay"),
        End::Done
    );
}

#[tokio::test]
async fn backend_closing_its_write_side_early_keeps_the_upload_flowing() {
    let mut r = rig(None, None).await;
    within(send_then_fin(&mut r.backend, &mut r.client, b"banner")).await;
    // The upload goes on after the backend's FIN.
    let body = pattern(1 << 20);
    within(send_then_fin(&mut r.client, &mut r.backend, &body)).await;
    assert_eq!(
        within(r.task).await.expect("join").expect("relay"),
        End::Done
    );
}

#[tokio::test]
async fn busy_one_way_stream_is_not_cut_but_silence_is() {
    let idle = Some(Duration::from_millis(300));
    let Rig {
        mut client,
        mut backend,
        task,
        ..
    } = rig(idle, idle).await;
    // 1.2 s of upload, one chunk every 50 ms: four idle timeouts long, never idle.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut total = 0;
        while let Ok(n) = backend.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    for _ in 0..24 {
        client.write_all(&[7u8; 1000]).await.expect("stream write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!task.is_finished(), "busy one-way stream was cut");
    // Now silence: the relay must end by idle timeout.
    let end = within(task).await.expect("join").expect("relay");
    assert!(matches!(end, End::ClientIdle | End::BackendIdle), "{end:?}");
    drop(client);
    assert_eq!(within(reader).await.expect("reader"), 24_000);
}

#[tokio::test]
async fn relay_future_stays_small() {
    let (a, b) = pair().await;
    let c = Counters::default();
    let relay = Relay {
        client: &a,
        backend: &b,
        client_idle: None,
        backend_idle: None,
        counters: [&c, &c],
        low_rtt_tuning: true,
    };
    let fut = relay.run(std::future::pending());
    let size = std::mem::size_of_val(&fut);
    eprintln!("relay future: {size} bytes");
    assert!(
        size <= 2048,
        "relay future grew to {size} bytes (idle memory per connection)"
    );
}

/// Accepted sockets inherit TCP_NODELAY from the listener; `handle` relies
/// on it instead of a `setsockopt` per connection.
#[tokio::test]
async fn accepted_sockets_inherit_nodelay_from_the_listener() {
    let l = super::tcp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = l.local_addr().expect("addr");
    let (c, a) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (accepted, _) = a.expect("accept");
    assert!(accepted.nodelay().expect("nodelay"));
    assert!(!c.expect("connect").nodelay().expect("nodelay"));
}

/// `dial` returns at once when the handshake completed inside `connect()`
/// (loopback) and otherwise waits for it: here the backend's accept queue is
/// full, so the kernel drops the first SYN and the retransmit (after about a
/// second) completes the connection only once the queue has room.
#[tokio::test]
async fn dial_waits_for_a_handshake_that_completes_later() {
    use crate::state::Target;
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    socket.bind(&any.into()).expect("bind");
    socket.listen(0).expect("listen"); // room for one queued connection
    let listener = std::net::TcpListener::from(socket);
    let addr = listener.local_addr().expect("addr");
    let target = Target::Addr(addr);
    let first = super::tcp::dial(&target, Some(Duration::from_secs(5))).await;
    let first = first.expect("room in the queue: connected at once");
    assert!(first.nodelay().expect("nodelay"));
    let second = tokio::spawn(async move { super::tcp::dial(&target, None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the queue is full: the SYN was dropped"
    );
    let _queued = listener.accept().expect("accept");
    let second = within(second)
        .await
        .expect("join")
        .expect("connected later");
    assert_eq!(second.peer_addr().expect("peer"), addr);
    drop(first);
}

/// A single exchange whose reply ends with the backend's FIN: the reply and
/// the FIN are read together and passed on together (`MSG_MORE`, then
/// `shutdown`). Nothing may be lost or held back, whether the client is
/// still open (it may go on sending) or closed its side first.
#[tokio::test]
async fn a_reply_ending_with_the_backend_fin_arrives_whole() {
    for client_closes_first in [false, true] {
        let mut r = rig(None, None).await;
        let (client, backend) = (&mut r.client, &mut r.backend);
        client.write_all(b"GET").await.expect("request");
        if client_closes_first {
            client.shutdown().await.expect("client FIN");
        }
        let mut req = [0u8; 3];
        within(backend.read_exact(&mut req))
            .await
            .expect("request at the backend");
        // Reply and FIN are both queued before the relay runs again.
        let reply = pattern(1000);
        backend.write_all(&reply).await.expect("reply");
        backend.shutdown().await.expect("backend FIN");
        let mut got = Vec::new();
        within(client.read_to_end(&mut got))
            .await
            .expect("client read");
        assert!(got == reply, "reply whole ({} bytes)", got.len());
        if !client_closes_first {
            client
                .write_all(b"more")
                .await
                .expect("after the backend's FIN");
            let mut more = [0u8; 4];
            within(backend.read_exact(&mut more))
                .await
                .expect("more at the backend");
            assert_eq!(&more, b"more");
            client.shutdown().await.expect("client FIN");
        }
        assert_eq!(
            within(r.task).await.expect("join").expect("relay"),
            End::Done
        );
        assert_eq!(r.counters.snapshot().rx_total, 1000);
    }
}

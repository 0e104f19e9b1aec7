//! One TLS connection (feature `tls`): see the module docs of [`super`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::Contexts;
use crate::config::Server;
use crate::debug;
use crate::proxy::pump::End;
use crate::proxy::stream::{Io, StreamRelay};
use crate::proxy::tcp::{dial, write_proxy_header};
use crate::state::{Backend, ConnGuard, Elected, Plan, ServerRuntime};

/// Handshake time limit when no setting gives one.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Client handshake limit: `sni.read_timeout`, else `client_idle_timeout`, else 10 s.
fn client_handshake_timeout(cfg: &Server) -> Duration {
    cfg.sni
        .as_ref()
        .map(|s| s.read_timeout)
        .or(cfg.client_idle_timeout)
        .unwrap_or(HANDSHAKE_TIMEOUT)
}

/// Terminate and/or originate TLS, then relay. The caller holds the server slot.
pub async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    host: Option<String>,
    server: &ServerRuntime,
    plan: &Plan,
    ctx: &Contexts,
    guard: &mut ConnGuard,
) {
    let name = &server.name;
    let cfg = &plan.config;
    let Ok(local) = client.local_addr() else {
        return;
    };
    let client: Box<dyn Io> = match &ctx.acceptor {
        // No backend could serve this name: refuse before the handshake's
        // work (a stream of made-up names must not cost a key operation each).
        Some(_) if !plan.sni_may_serve(host.as_deref()) => {
            server.counters.refused.fetch_add(1, Relaxed);
            crate::proxy::tcp::no_backend(plan, name, peer, host.as_deref());
            return refuse_name(&client);
        }
        Some(acceptor) => {
            let accept = TlsAcceptor::from(Arc::clone(acceptor)).accept(client);
            match tokio::time::timeout(client_handshake_timeout(cfg), accept).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => {
                    server.counters.refused.fetch_add(1, Relaxed);
                    debug!(name, "{peer}: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    server.counters.refused.fetch_add(1, Relaxed);
                    debug!(name, "{peer}: TLS handshake timed out");
                    return;
                }
            }
        }
        None => Box::new(client),
    };
    let Some((backend, elected)) = connect(plan, name, peer, local, host.as_deref(), ctx).await
    else {
        server.counters.refused.fetch_add(1, Relaxed);
        return;
    };
    let key = &plan.backends[elected.index].key;
    let relay = StreamRelay {
        client,
        backend,
        client_idle: cfg.client_idle_timeout,
        backend_idle: cfg.backend_idle_timeout,
        counters: [&server.counters, &elected.state.counters],
    };
    let closed = elected.state.closed();
    let kill = async {
        tokio::select! {
            _ = guard.kill.wait_for(|k| *k) => {}
            () = closed => {}
        }
    };
    match relay.run(kill).await {
        Ok(End::Done) => debug!(name, "{peer} -> {key}: closed"),
        Ok(end) => debug!(name, "{peer} -> {key}: {end:?}"),
        Err(e) => debug!(name, "{peer} -> {key}: {e}"),
    }
}

/// A fatal `unrecognized_name` alert (RFC 8446 §6.2: a TLS 1.0-style
/// record header, then level 2 = fatal, description 112), so the client
/// learns why; the ClientHello was only peeked, so it is read away first
/// (closing with unread input would reset the connection and could lose
/// the alert).
fn refuse_name(client: &TcpStream) {
    const ALERT: [u8; 7] = [21, 3, 1, 0, 2, 2, 112];
    let mut buf = [0u8; 4096];
    for _ in 0..8 {
        match client.try_read(&mut buf) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let _ = client.try_write(&ALERT);
}

/// Elect and open, trying up to `backend_connection_retries` other backends.
async fn connect(
    plan: &Plan,
    server: &str,
    peer: SocketAddr,
    local: SocketAddr,
    host: Option<&str>,
    ctx: &Contexts,
) -> Option<(Box<dyn Io>, Elected)> {
    crate::proxy::tcp::elect_and_open(plan, server, peer, host, |b| {
        open(plan, b, peer, local, ctx)
    })
    .await
}

/// Connect, PROXY header, then the TLS handshake when `[backends_tls]` is set.
/// The name verified (and sent as SNI) is the backend's host, as in gobetween.
async fn open(
    plan: &Plan,
    b: &Backend,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &Contexts,
) -> io::Result<Box<dyn Io>> {
    let timeout = plan.config.backend_connection_timeout;
    let stream = dial(&b.target, timeout).await?;
    if let Some(version) = plan.config.proxy_protocol {
        write_proxy_header(&stream, version, peer, local).await?;
    }
    let Some(connector) = &ctx.connector else {
        return Ok(Box::new(stream));
    };
    let name = crate::tls::server_name(&b.spec.host)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let handshake = crate::tls::connect(stream, Arc::clone(connector), name);
    let stream = tokio::time::timeout(timeout.unwrap_or(HANDSHAKE_TIMEOUT), handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    Ok(Box::new(stream))
}

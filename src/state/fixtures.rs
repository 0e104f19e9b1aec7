//! Test fixtures: minimal valid runtime configs.

use std::time::Duration;

use crate::balance::BalanceKind;
use crate::config::{Discovery, DiscoveryKind, FailPolicy, Healthcheck, Protocol, Server};
use crate::discovery::static_list::parse_line;

/// A tcp server on `bind` with one static backend and no health check.
pub fn test_server(bind: &str) -> Server {
    Server {
        bind: bind.parse().expect("test bind"),
        protocol: Protocol::Tcp,
        balance: BalanceKind::Weight,
        max_connections: 0,
        client_idle_timeout: None,
        backend_idle_timeout: None,
        backend_connection_timeout: None,
        backend_connection_retries: 1,
        drain_timeout: Duration::from_secs(30),
        low_rtt_tuning: true,
        sockmap: false,
        access: None,
        proxy_protocol: None,
        discovery: Discovery {
            kind: DiscoveryKind::Static {
                backends: vec![parse_line("127.0.0.1:8000").expect("test line")],
            },
            interval: None,
            timeout: Duration::from_secs(5),
            failpolicy: FailPolicy::KeepLast,
        },
        healthcheck: Healthcheck::none(),
        sni: None,
        tls: None,
        backends_tls: None,
        udp: None,
    }
}

//! Point-in-time copies of a server and its backends, read once and then
//! rendered as JSON (API stats), Prometheus text or the status page.

use std::sync::atomic::Ordering::Relaxed;

use super::Snapshot;
use crate::health::report::Report;
use crate::state::{ADMIN_DISABLED, ADMIN_DRAIN, ServerRuntime};

#[derive(Debug, Clone)]
pub struct ServerView {
    pub name: String,
    pub bind: String,
    pub balance: &'static str,
    pub counters: Snapshot,
    pub backends: Vec<BackendView>,
}

#[derive(Debug, Clone)]
pub struct BackendView {
    /// `host:port`.
    pub key: String,
    pub host: String,
    pub port: u16,
    pub priority: u32,
    pub weight: u32,
    pub max_connections: u32,
    pub sni: String,
    pub live: bool,
    /// In the current discovered list; `false` for a removed backend that
    /// stays (unelectable) until its connections end.
    pub discovered: bool,
    /// One of `ADMIN_*`.
    pub admin: u8,
    pub score: u32,
    pub counters: Snapshot,
    pub health: Report,
}

impl BackendView {
    /// Discovered, live and enabled: new connections may go there.
    pub fn electable(&self) -> bool {
        self.discovered && self.live && self.admin == crate::state::ADMIN_ENABLED
    }
}

/// `enabled`, `drain` or `disabled`.
pub fn admin_label(admin: u8) -> &'static str {
    match admin {
        ADMIN_DRAIN => "drain",
        ADMIN_DISABLED => "disabled",
        _ => "enabled",
    }
}

/// The label values of `betwixt_backend_admin_state{state}`.
pub const ADMIN_LABELS: [&str; 3] = ["enabled", "drain", "disabled"];

impl ServerView {
    pub fn of(rt: &ServerRuntime) -> Self {
        let plan = rt.plan();
        let backends = plan
            .backends
            .iter()
            .map(|b| BackendView {
                key: b.key.clone(),
                host: b.spec.host.clone(),
                port: b.spec.port,
                priority: b.spec.priority,
                weight: b.spec.weight,
                max_connections: b.spec.max_connections,
                sni: b.spec.sni.clone(),
                live: b.state.live.load(Relaxed),
                discovered: !b.removed,
                admin: b.state.admin.load(Relaxed),
                score: b.state.score.load(Relaxed),
                counters: b.state.counters.snapshot(),
                health: b.state.report().clone(),
            })
            .collect();
        Self {
            name: rt.name.clone(),
            bind: plan.config.bind.to_string(),
            balance: plan.config.balance.name(),
            counters: rt.counters.snapshot(),
            backends,
        }
    }

    pub fn electable(&self) -> usize {
        self.backends.iter().filter(|b| b.electable()).count()
    }
}

//! What the daemon does with an API [`Op`]: validate against the file +
//! overlay, refuse conflicts, apply through the daemon's reload path.
//!
//! The daemon implements [`Control`]; this module holds the decisions, so
//! `daemon.rs` only wires the channel in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};

use super::overlay::{Overlay, errors_json, merge};
use super::{Op, Reply};
use crate::config::raw::RawConfig;
use crate::config::{Config, Loaded};
use crate::health::runner::unix_ms;
use crate::metrics::view::admin_label;
use crate::state::saved::{Saved, SavedBackend};
use crate::state::{ADMIN_ENABLED, ServerRuntime};
use crate::{info, warn};

/// The daemon as the API sees it.
pub trait Control {
    fn config(&self) -> &Config;
    fn file_raw(&self) -> &RawConfig;
    fn overlay_mut(&mut self) -> &mut Overlay;
    /// Apply a validated config as a SIGHUP diff; failed starts by name.
    fn apply(&mut self, loaded: Loaded) -> BTreeMap<String, String>;
    fn runtime(&self, name: &str) -> Option<Arc<ServerRuntime>>;
}

pub fn execute(ctl: &mut impl Control, op: Op) -> Reply {
    match op {
        Op::Create { name, body } => {
            if ctl.config().servers.contains_key(&name) {
                return Reply {
                    status: 409,
                    body: json!(format!("Server with this name already exists: {name}")),
                };
            }
            change(ctl, &name, Some(body))
        }
        Op::Replace { name, body } => {
            if !ctl.config().servers.contains_key(&name) {
                return Reply::error(404, format!("no server {name}"));
            }
            change(ctl, &name, Some(body))
        }
        Op::Delete { name } if ctl.config().servers.contains_key(&name) => change(ctl, &name, None),
        Op::Delete { .. } => Reply::ok(Value::Null),
        Op::Admin {
            server,
            backend,
            admin,
            close,
        } => set_admin(ctl, &server, &backend, admin, close),
    }
}

fn change(ctl: &mut impl Control, name: &str, entry: Option<Value>) -> Reply {
    let mut overlay = ctl.overlay_mut().clone();
    overlay.insert(name.to_string(), entry);
    let loaded = match merge(ctl.file_raw(), &overlay) {
        Ok(l) => l,
        Err(errors) => {
            return Reply {
                status: 400,
                body: errors_json(&errors),
            };
        }
    };
    if let Some(new) = loaded.config.servers.get(name) {
        let old_bind = ctl.config().servers.get(name).map(|s| s.bind);
        if old_bind != Some(new.bind)
            && let Err(e) = std::net::TcpListener::bind(new.bind)
        {
            return Reply {
                status: 409,
                body: json!({
                    "error": format!("servers.{name}.bind: cannot listen on {}: {e}", new.bind),
                    "errors": [{ "field": format!("servers.{name}.bind"), "message": e.to_string() }],
                }),
            };
        }
    }
    *ctl.overlay_mut() = overlay;
    let failed = ctl.apply(loaded);
    match failed.get(name) {
        Some(e) => Reply::error(409, format!("servers.{name}.bind: {e}")),
        None => {
            info!("api", "server {name} changed through the API");
            Reply::ok(Value::Null)
        }
    }
}

fn set_admin(ctl: &mut impl Control, server: &str, key: &str, admin: u8, close: bool) -> Reply {
    let Some(rt) = ctl.runtime(server) else {
        return Reply::error(404, format!("no server {server}"));
    };
    let plan = rt.plan();
    let Some(b) = plan.backends.iter().find(|b| b.key == key) else {
        return Reply::error(404, format!("server {server} has no backend {key}"));
    };
    b.state.admin.store(admin, Relaxed);
    if close {
        b.state.close_connections();
    }
    let label = admin_label(admin);
    info!(
        server,
        "backend {key}: admin state {label}{}",
        if close { ", connections closed" } else { "" }
    );
    Reply::ok(json!({ "server": server, "backend": key, "admin": label }))
}

/// The state to keep: the overlay and every backend's admin state and health.
pub fn snapshot(overlay: &Overlay, servers: &[Arc<ServerRuntime>]) -> Saved {
    let overlay = overlay
        .iter()
        .map(|(k, v)| (k.clone(), v.as_ref().map(Value::to_string)))
        .collect();
    let mut backends = Vec::new();
    for rt in servers {
        for b in &rt.plan().backends {
            let report = b.state.report();
            backends.push(SavedBackend {
                server: rt.name.clone(),
                key: b.key.clone(),
                admin: b.state.admin.load(Relaxed),
                healthy: b.state.live.load(Relaxed),
                score: b.state.score.load(Relaxed),
                since_ms: report.since_ms,
            });
        }
    }
    Saved {
        saved_ms: unix_ms(),
        overlay,
        backends,
    }
}

/// The overlay kept in a state file (entries that do not parse are dropped).
pub fn saved_overlay(saved: &Saved) -> Overlay {
    saved
        .overlay
        .iter()
        .filter_map(|(name, text)| match text {
            None => Some((name.clone(), None)),
            Some(t) => match serde_json::from_str(t) {
                Ok(v) => Some((name.clone(), Some(v))),
                Err(e) => {
                    warn!("state", "dropping saved server {name}: {e}");
                    None
                }
            },
        })
        .collect()
}

/// Admin state and (if younger than `max_age_ms`) health saved for this
/// backend; applied before its health checker starts.
pub fn restore(saved: &Saved, server: &str, plan: &crate::state::Plan, max_age_ms: u64) {
    let fresh = unix_ms().saturating_sub(saved.saved_ms) <= max_age_ms;
    for b in &plan.backends {
        let Some(s) = saved
            .backends
            .iter()
            .find(|s| s.server == server && s.key == b.key)
        else {
            continue;
        };
        if s.admin != ADMIN_ENABLED {
            b.state.admin.store(s.admin, Relaxed);
        }
        if fresh {
            b.state.live.store(s.healthy, Relaxed);
            b.state.score.store(s.score, Relaxed);
            let mut r = b.state.report();
            r.healthy = s.healthy;
            r.score = s.score;
            r.since_ms = s.since_ms;
        }
    }
}

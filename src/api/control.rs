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
use crate::config::raw::{RawConfig, RawServer};
use crate::config::{Config, ConfigError, Loaded};
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
    /// The section `name` runs with (the file's or the API's), as the API
    /// shows it redacted.
    fn server_raw(&self, name: &str) -> Option<RawServer>;
    /// The config being run, to put back when a change fails to apply.
    fn current(&self) -> Loaded;
}

/// An API change's merge of the file with the changed overlay: a parse
/// that resolves `bind` host names, so the daemon runs it on the blocking
/// pool ([`Merge::run`]) and not on the runtime that carries traffic.
pub struct Merge {
    name: String,
    overlay: Overlay,
    file: RawConfig,
}

/// A [`Merge`] done, for [`finish`].
pub struct Merged {
    name: String,
    overlay: Overlay,
    loaded: Result<Loaded, Vec<ConfigError>>,
}

impl Merge {
    pub fn run(self: Box<Self>) -> Merged {
        let loaded = merge(&self.file, &self.overlay);
        Merged {
            name: self.name,
            overlay: self.overlay,
            loaded,
        }
    }
}

/// What to do with an [`Op`]: answer now, or merge first.
pub enum Step {
    Reply(Reply),
    Merge(Box<Merge>),
}

/// Answer `op` at once, or say what to merge for it. Nothing may change the
/// file config or the overlay between this and [`finish`].
pub fn begin(ctl: &mut impl Control, op: Op) -> Step {
    match op {
        Op::Create { name, body } => {
            if ctl.config().servers.contains_key(&name) {
                return Step::Reply(Reply {
                    status: 409,
                    body: json!(format!("Server with this name already exists: {name}")),
                });
            }
            change(ctl, name, Some(body))
        }
        Op::Replace { name, mut body } => {
            if !ctl.config().servers.contains_key(&name) {
                return Step::Reply(Reply::error(404, format!("no server {name}")));
            }
            // A section read from /servers and sent back keeps its secrets.
            if let Some(current) = ctl.server_raw(&name) {
                crate::config::secrets::restore(&mut body, &current);
            }
            change(ctl, name, Some(body))
        }
        Op::Delete { name } if ctl.config().servers.contains_key(&name) => change(ctl, name, None),
        Op::Delete { .. } => Step::Reply(Reply::ok(Value::Null)),
        Op::Admin {
            server,
            backend,
            admin,
            close,
        } => Step::Reply(set_admin(ctl, &server, &backend, admin, close)),
    }
}

/// The overlay with `entry` for `name`, to merge with the file.
fn change(ctl: &mut impl Control, name: String, entry: Option<Value>) -> Step {
    let mut overlay = ctl.overlay_mut().clone();
    overlay.insert(name.clone(), entry);
    Step::Merge(Box::new(Merge {
        name,
        overlay,
        file: ctl.file_raw().clone(),
    }))
}

/// Apply a merged change, and keep it only if the daemon applied it and
/// the server started: on any failure the previous overlay and servers are
/// put back, so a refused request leaves nothing behind (no half-made
/// server, no entry that breaks later changes).
pub fn finish(ctl: &mut impl Control, merged: Merged) -> Reply {
    let Merged {
        name,
        overlay,
        loaded,
    } = merged;
    let name = name.as_str();
    let loaded = match loaded {
        Ok(l) => l,
        Err(errors) => {
            // Only listeners that overlap: a conflict, like a port in use.
            let conflict = errors.iter().all(ConfigError::is_bind_conflict);
            return Reply {
                status: if conflict { 409 } else { 400 },
                body: errors_json(&errors),
            };
        }
    };
    let wanted = loaded.config.servers.get(name).cloned();
    let warnings: Vec<String> = loaded
        .warnings
        .iter()
        .filter(|w| w.starts_with(&format!("servers.{name}.")))
        .cloned()
        .collect();
    if let Some(new) = &wanted {
        let old_bind = ctl.config().servers.get(name).map(|s| s.bind);
        if old_bind != Some(new.bind)
            && let Some(e) = bind_error(new)
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
    let before = ctl.current();
    let previous = std::mem::replace(ctl.overlay_mut(), overlay);
    let failed = ctl.apply(loaded);
    let applied = ctl.config().servers.get(name) == wanted.as_ref();
    let why = match failed.get(name) {
        None if applied => {
            info!("api", "server {name} changed through the API");
            for w in &warnings {
                warn!("api", "{w}");
            }
            return Reply::ok(Value::Null);
        }
        Some(e) if e.starts_with("servers.") => e.clone(),
        Some(e) => format!("servers.{name}.bind: {e}"),
        None => failed.into_values().collect::<Vec<_>>().join("; "),
    };
    warn!(
        "api",
        "server {name}: change not applied, rolled back: {why}"
    );
    *ctl.overlay_mut() = previous;
    if applied {
        // What ran before, as it was: no second merge (and no `bind` name
        // lookups) on the loop.
        ctl.apply(before);
    }
    Reply::error(409, why)
}

/// Why `server.bind` cannot be listened on with its protocol, if it cannot.
/// Transparent UDP needs a capability and maybe a foreign address: its
/// start reports that (and the change is then rolled back).
fn bind_error(server: &crate::config::Server) -> Option<std::io::Error> {
    match &server.udp {
        Some(u) if u.transparent => None,
        Some(_) => std::net::UdpSocket::bind(server.bind).err(),
        None => std::net::TcpListener::bind(server.bind).err(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, parse};

    /// [`begin`], the merge in place (the daemon runs it on the blocking
    /// pool), and [`finish`].
    fn execute(ctl: &mut impl Control, op: Op) -> Reply {
        match begin(ctl, op) {
            Step::Reply(reply) => reply,
            Step::Merge(m) => finish(ctl, m.run()),
        }
    }

    /// The daemon's side of [`Control`]: `apply` takes the config and fails
    /// the starts named in `fail_start`, or, with `fail_edges`, changes
    /// nothing (a TLS file that cannot be read).
    struct Fake {
        loaded: Loaded,
        overlay: Overlay,
        fail_start: BTreeMap<String, String>,
        fail_edges: Option<(String, String)>,
        applied: usize,
    }

    impl Fake {
        fn new() -> Self {
            let text = "[servers.web]\nbind = \"127.0.0.1:1\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n";
            Self {
                loaded: parse(text, Format::Toml).unwrap(),
                overlay: Overlay::new(),
                fail_start: BTreeMap::new(),
                fail_edges: None,
                applied: 0,
            }
        }
    }

    impl Control for Fake {
        fn config(&self) -> &Config {
            &self.loaded.config
        }
        fn file_raw(&self) -> &RawConfig {
            &self.loaded.raw
        }
        fn overlay_mut(&mut self) -> &mut Overlay {
            &mut self.overlay
        }
        fn apply(&mut self, loaded: Loaded) -> BTreeMap<String, String> {
            self.applied += 1;
            if let Some(e) = &self.fail_edges {
                return [e.clone()].into();
            }
            let failed = self
                .fail_start
                .iter()
                .filter(|(n, _)| loaded.config.servers.contains_key(*n))
                .map(|(n, e)| (n.clone(), e.clone()))
                .collect();
            self.loaded.config = loaded.config;
            failed
        }
        fn runtime(&self, _: &str) -> Option<Arc<ServerRuntime>> {
            None
        }
        fn current(&self) -> Loaded {
            Loaded {
                config: self.loaded.config.clone(),
                warnings: Vec::new(),
                raw: self.loaded.raw.clone(),
            }
        }
        fn server_raw(&self, name: &str) -> Option<RawServer> {
            match self.overlay.get(name) {
                Some(Some(v)) => serde_json::from_value(v.clone()).ok(),
                Some(None) => None,
                None => self.loaded.raw.servers.as_ref()?.get(name).cloned(),
            }
        }
    }

    fn create(name: &str, body: Value) -> Op {
        Op::Create {
            name: name.into(),
            body,
        }
    }

    fn body(bind: &str, protocol: &str) -> Value {
        json!({
            "bind": bind, "protocol": protocol, "client_idle_timeout": "10s",
            "discovery": { "kind": "static", "static_list": ["127.0.0.1:2"] },
        })
    }

    /// A loopback address nothing listens on (TCP or UDP) right now.
    fn free() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[test]
    fn a_server_that_cannot_start_is_rolled_back() {
        let mut ctl = Fake::new();
        ctl.fail_start
            .insert("new".into(), "Address already in use".into());
        let r = execute(&mut ctl, create("new", body(&free(), "tcp")));
        assert_eq!(r.status, 409, "{r:?}");
        assert!(
            r.body["error"].as_str().unwrap().contains("in use"),
            "{r:?}"
        );
        assert!(ctl.overlay.is_empty(), "{:?}", ctl.overlay);
        assert!(!ctl.config().servers.contains_key("new"));
        assert!(ctl.config().servers.contains_key("web"));
        // Nothing is left behind: the next create is not "already exists".
        ctl.fail_start.clear();
        let r = execute(&mut ctl, create("new", body(&free(), "tcp")));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(ctl.overlay.contains_key("new"));
    }

    #[test]
    fn a_change_the_daemon_did_not_apply_is_an_error_and_rolled_back() {
        let mut ctl = Fake::new();
        ctl.fail_edges = Some(("t".into(), "servers.t.tls: /x.crt: not found".into()));
        let r = execute(&mut ctl, create("new", body(&free(), "tcp")));
        assert_eq!(r.status, 409, "{r:?}");
        assert!(
            r.body["error"].as_str().unwrap().contains("/x.crt"),
            "{r:?}"
        );
        assert!(ctl.overlay.is_empty(), "{:?}", ctl.overlay);
        let r = execute(&mut ctl, Op::Delete { name: "web".into() });
        assert_eq!(r.status, 409, "{r:?}");
        assert!(ctl.overlay.is_empty(), "{:?}", ctl.overlay);
    }

    /// What a client reads from `/servers/NAME` for the overlay's `name`.
    fn shown(ctl: &Fake, name: &str) -> Value {
        let raw: RawServer = serde_json::from_value(ctl.overlay[name].clone().unwrap()).unwrap();
        super::super::dump::filled(&raw, &ctl.loaded.config.servers[name])
    }

    #[test]
    fn a_section_sent_back_keeps_its_secrets_and_a_copy_is_refused() {
        let mut ctl = Fake::new();
        let mut b = body(&free(), "tcp");
        b["healthcheck"] = json!({
            "kind": "webhook", "interval": "2s", "timeout": "1s",
            "webhook_url": "http://127.0.0.1:1/hook?token=S1",
        });
        assert_eq!(execute(&mut ctl, create("h", b)).status, 200);
        let mut read = shown(&ctl, "h");
        assert_eq!(
            read["healthcheck"]["webhook_url"],
            "http://127.0.0.1:1/hook?token=<redacted>"
        );
        read["balance"] = "roundrobin".into();
        let put = Op::Replace {
            name: "h".into(),
            body: read.clone(),
        };
        let r = execute(&mut ctl, put);
        assert_eq!(r.status, 200, "{r:?}");
        let kept = ctl.overlay["h"].clone().unwrap();
        assert_eq!(
            kept["healthcheck"]["webhook_url"],
            "http://127.0.0.1:1/hook?token=S1"
        );
        assert_eq!(kept["balance"], "roundrobin");
        // A new server has no secret to keep: the mark is refused by name.
        read["bind"] = free().into();
        let r = execute(&mut ctl, create("copy", read.clone()));
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(
            r.body["errors"][0]["field"], "servers.copy.healthcheck.webhook_url",
            "{r:?}"
        );
        // A changed value with the mark in it is not the current secret.
        read["healthcheck"]["webhook_url"] = "http://127.0.0.1:2/hook?token=<redacted>".into();
        let r = execute(
            &mut ctl,
            Op::Replace {
                name: "h".into(),
                body: read,
            },
        );
        assert_eq!(r.status, 400, "{r:?}");
    }

    #[test]
    fn the_bind_check_uses_the_server_protocol() {
        // A TCP port whose UDP twin was free a moment ago (other programs
        // take ephemeral UDP ports too).
        let (_tcp, tcp_busy) = (0..50)
            .find_map(|_| {
                let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = tcp.local_addr().unwrap();
                std::net::UdpSocket::bind(addr).ok()?;
                Some((tcp, addr.to_string()))
            })
            .expect("a TCP port with a free UDP twin");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_busy = udp.local_addr().unwrap().to_string();
        let mut ctl = Fake::new();
        let r = execute(&mut ctl, create("u1", body(&tcp_busy, "udp")));
        assert_eq!(r.status, 200, "a busy TCP port does not stop UDP: {r:?}");
        let applied = ctl.applied;
        let r = execute(&mut ctl, create("u2", body(&udp_busy, "udp")));
        assert_eq!(r.status, 409, "{r:?}");
        assert_eq!(r.body["errors"][0]["field"], "servers.u2.bind", "{r:?}");
        assert_eq!(ctl.applied, applied, "refused before anything changed");
        let r = execute(&mut ctl, create("t1", body(&tcp_busy, "tcp")));
        assert_eq!(r.status, 409, "{r:?}");
    }
}

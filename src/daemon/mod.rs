//! Process lifecycle: start servers, handle signals, reload by diff, drain.
//!
//! - SIGHUP: re-read the config source. Invalid: log every error, keep
//!   running the old config. Valid: apply [`crate::state::diff::diff`].
//! - SIGTERM: close listeners, let connections finish up to the largest
//!   `drain_timeout`, close the rest, exit 0.
//! - SIGINT: exit at once, also during a SIGTERM drain.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{mpsc, watch};

use crate::api::control::{self, Control};
use crate::api::overlay::{self, Overlay};
use crate::api::{self, Shared};
use crate::config::raw::RawConfig;
use crate::config::{
    self, Check, Config, ConfigError, DiscoveryKind, Format, Loaded, ProbeProtocol, Protocol,
    Server,
};
use crate::discovery::runner::{Supervisor as Discovery, Update};
use crate::discovery::source::Remote;
use crate::discovery::{BackendSpec, Fetcher, initial_specs};
use crate::health::Context;
use crate::health::runner::Supervisor;
use crate::metrics::RATE_WINDOW;
use crate::proxy::tls::{Contexts, Edge};
use crate::proxy::{sockmap, tcp, udp};
use crate::state::diff::{Op, diff, handovers};
use crate::state::saved::{self, Saved, SavedBackend};
use crate::state::{Plan, ServerRuntime};
use crate::{error, info, warn};

mod gate;
mod life;
mod persist;
mod signals;
mod source;

use gate::build_edges;
pub use gate::{file_errors, unsupported};
pub use life::run;
use persist::{read_state, start_http, with_overlay};
pub use source::Source;

/// A server with a bound listener.
struct Running {
    runtime: Arc<ServerRuntime>,
    stop: watch::Sender<bool>,
    /// TLS configurations (tcp and tls servers), rebuilt on every reload.
    edge: Option<Arc<Edge>>,
    /// A duplicate of the TCP listening socket, to take it out of LISTEN at
    /// once on stop: its task drops the listener only when next polled, and
    /// a server started in the same reload may want the port.
    listener: Option<std::os::fd::OwnedFd>,
}

struct Daemon {
    config: Config,
    servers: BTreeMap<String, Running>,
    health: Supervisor,
    discovery: Discovery,
    /// The config file as parsed; the API overlay is laid over it.
    file_raw: RawConfig,
    overlay: Overlay,
    /// What the API threads read.
    shared: Arc<Shared>,
    /// Configured servers that could not listen.
    failed: BTreeMap<String, String>,
    /// The state file's content at start (applied as servers start; after
    /// the start, the backends of dynamic servers not discovered yet, applied
    /// as they appear), and what was last written.
    restore: Option<Saved>,
    written: Saved,
    /// Drains of servers stopped by a reload or the API: SIGTERM waits for
    /// them too, each up to its own deadline.
    draining: Vec<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Bind and serve `name`. `previous`: its plan before a stop for a new
    /// listener, whose backends keep their state (health, counters) and, for
    /// dynamic discovery, whose list is kept until the next fetch.
    /// `listener`: a TCP listener on `cfg.bind` handed over by a server this
    /// reload stopped, used instead of binding again.
    fn start(
        &mut self,
        name: &str,
        cfg: &Server,
        contexts: Option<Contexts>,
        previous: Option<&Plan>,
        listener: Option<OwnedFd>,
    ) -> io::Result<()> {
        enum Bound {
            Tcp(tokio::net::TcpListener),
            Udp(tokio::net::UdpSocket),
        }
        let bound = match (&cfg.udp, listener) {
            (Some(u), _) => Bound::Udp(udp::bind(cfg.bind, u.transparent)?),
            (None, Some(fd)) => Bound::Tcp(tokio::net::TcpListener::from_std(fd.into())?),
            (None, None) => Bound::Tcp(tcp::bind(cfg.bind)?),
        };
        let specs = match (previous, &cfg.discovery.kind) {
            (Some(old), DiscoveryKind::Exec { .. } | DiscoveryKind::Other { .. }) => {
                usable(name, cfg, &old.specs())
            }
            _ => initial_specs(&cfg.discovery).to_vec(),
        };
        let plan = plan(name, Arc::new(cfg.clone()), &specs, previous);
        // The state file is for backends without a live state.
        let fresh = previous.is_none();
        if fresh {
            self.restore_saved(name, &plan);
        }
        self.health.sync(name, &plan);
        if fresh {
            self.restore_saved(name, &plan);
        }
        // A server started again for a new listener serves its last list.
        let serving = previous.map(|_| specs.as_slice());
        self.discovery.sync(name, &cfg.discovery, serving);
        if cfg.sockmap {
            sockmap::prepare(name);
        }
        let runtime = Arc::new(ServerRuntime::new(name.to_string(), plan));
        let (stop, stopped) = watch::channel(false);
        let listener = match &bound {
            Bound::Tcp(l) => Some(std::os::fd::AsFd::as_fd(l).try_clone_to_owned()?),
            Bound::Udp(_) => None,
        };
        let edge = match bound {
            Bound::Tcp(listener) => {
                let edge = Arc::new(Edge::new(contexts.unwrap_or_default()));
                let serve = tcp::serve(listener, Arc::clone(&runtime), Arc::clone(&edge), stopped);
                tokio::spawn(serve);
                Some(edge)
            }
            Bound::Udp(socket) => {
                tokio::spawn(udp::serve(socket, Arc::clone(&runtime), stopped));
                None
            }
        };
        info!(
            name,
            "listening on {} ({}, {} backends)",
            cfg.bind,
            cfg.balance.name(),
            plan_len(&runtime)
        );
        self.servers.insert(
            name.to_string(),
            Running {
                runtime,
                stop,
                edge,
                listener,
            },
        );
        Ok(())
    }

    /// Close the listener; open connections drain in the background.
    /// Returns the server's last plan, and with `keep` its TCP listener,
    /// left open for a server started in the same reload ([`handovers`]).
    fn stop(&mut self, name: &str, keep: bool) -> Option<(Arc<Plan>, Option<OwnedFd>)> {
        self.health.stop(name);
        self.discovery.stop(name);
        if let Some(saved) = &mut self.restore {
            saved.backends.retain(|b| b.server != name);
        }
        let mut r = self.servers.remove(name)?;
        let kept = match r.listener.take() {
            Some(fd) if keep => Some(fd),
            Some(fd) => {
                close_listener(&fd);
                None
            }
            None => None,
        };
        let plan = r.runtime.plan();
        r.stop.send_replace(true);
        info!(
            name,
            "stopped; draining {} connection(s)",
            r.runtime.tracker.open()
        );
        self.draining.retain(|d| !d.is_finished());
        (self.draining).push(tokio::spawn(drain(r.runtime, plan.config.drain_timeout)));
        Some((plan, kept))
    }

    fn update(&mut self, name: &str, cfg: &Server) {
        if let Some(r) = self.servers.get(name) {
            let old = r.runtime.plan();
            // A dynamic kind keeps its last list until its (re)started task
            // sends a new one.
            let specs = match &cfg.discovery.kind {
                DiscoveryKind::Static { backends } => backends.clone(),
                DiscoveryKind::Exec { .. } | DiscoveryKind::Other { .. } => {
                    usable(name, cfg, &old.specs())
                }
            };
            if cfg.sockmap && !old.config.sockmap {
                sockmap::prepare(name);
            }
            let plan = plan(name, Arc::new(cfg.clone()), &specs, Some(&old));
            self.health.sync(name, &plan);
            self.discovery.sync(name, &cfg.discovery, Some(&specs));
            r.runtime.set_plan(plan);
            info!(name, "updated in place");
        }
    }

    /// Apply a new valid config as a diff; servers that failed to start by
    /// name. TLS setups are built first (certificate files read again, also
    /// swapped into unchanged servers); if any fails, nothing changes and the
    /// failures are returned.
    fn apply(&mut self, loaded: Loaded) -> BTreeMap<String, String> {
        let mut edges = match build_edges(&loaded.config) {
            Ok(edges) => edges,
            Err(errors) => {
                for (_, e) in &errors {
                    error!("config", "{e}");
                }
                return errors.into_iter().collect();
            }
        };
        let new = loaded.config;
        // A server that could not listen is configured but not running:
        // diff it as absent, so that this reload tries to start it again.
        let running: BTreeMap<String, Server> = (self.config.servers.iter())
            .filter(|(name, _)| !self.failed.contains_key(*name))
            .map(|(name, cfg)| (name.clone(), cfg.clone()))
            .collect();
        self.failed.retain(|name, _| new.servers.contains_key(name));
        if new.logging != self.config.logging
            && let Err(e) = crate::log::configure(&new.logging)
        {
            error!("config", "logging: {e}; keeping the previous logger");
        }
        if new.max_exec_checks != self.config.max_exec_checks {
            warn!(
                "config",
                "defaults.max_exec_checks: the change from {} to {} takes effect at the next start",
                self.config.max_exec_checks,
                new.max_exec_checks
            );
        }
        // Servers stopped for a new listener start again from their plan.
        let mut stopped = BTreeMap::new();
        let ops = diff(&running, &new.servers);
        let handover = handovers(&running, &new.servers, &ops);
        let mut listeners = BTreeMap::new();
        for op in ops {
            match op {
                Op::Stop(name) => {
                    let to = handover.get(&name);
                    if let Some((plan, fd)) = self.stop(&name, to.is_some()) {
                        if let (Some(to), Some(fd)) = (to, fd) {
                            listeners.insert(to.clone(), fd);
                        }
                        stopped.insert(name, plan);
                    }
                }
                Op::Update(name) => self.update(&name, &new.servers[&name]),
                Op::Start(name) => {
                    let contexts = edges.remove(&name);
                    let previous = stopped.get(&name).map(|p| &**p);
                    let listener = listeners.remove(&name);
                    if listener.is_some() {
                        info!(
                            &name,
                            "takes over the listener on {}", new.servers[&name].bind
                        );
                    }
                    let cfg = &new.servers[&name];
                    if let Err(e) = self.start(&name, cfg, contexts, previous, listener) {
                        error!(&name, "cannot listen on {}: {e}", new.servers[&name].bind);
                        self.failed.insert(name.clone(), e.to_string());
                    } else {
                        self.failed.remove(&name);
                    }
                }
            }
        }
        // Handed over but not taken (that start failed before binding).
        listeners.values().for_each(close_listener);
        for (name, contexts) in edges {
            if let Some(edge) = self.servers.get(&name).and_then(|r| r.edge.as_ref()) {
                edge.set(contexts);
            }
        }
        self.config = new;
        self.publish(loaded.raw);
        self.persist();
        self.failed.clone()
    }

    /// A discovery task found a new list.
    fn discovered(&mut self, update: Update) {
        if !self.discovery.is_current(&update) {
            return;
        }
        if let Some(r) = self.servers.get(&update.server) {
            let old = r.runtime.plan();
            let specs = usable(&update.server, &old.config, &update.specs);
            let plan = plan(&update.server, Arc::clone(&old.config), &specs, Some(&old));
            self.restore_saved(&update.server, &plan);
            self.health.sync(&update.server, &plan);
            self.restore_saved(&update.server, &plan);
            if let Some(saved) = &mut self.restore {
                let found = |b: &SavedBackend| plan.backends.iter().any(|p| p.key == b.key);
                saved
                    .backends
                    .retain(|b| b.server != update.server || !found(b));
            }
            r.runtime.set_plan(plan);
        }
    }

    /// Saved admin state and health (the state file, read at start) for the
    /// backends of `server` in `plan`: at start, and as its first
    /// discovered lists bring them.
    fn restore_saved(&self, server: &str, plan: &Plan) {
        if let Some(saved) = &self.restore {
            let max_age = self.config.api.state_max_age.as_millis() as u64;
            control::restore(saved, server, plan, max_age);
        }
    }

    fn tick(&mut self, elapsed: Duration) {
        self.persist();
        for (name, r) in &self.servers {
            if let Some(plan) = r.runtime.plan().prune() {
                self.health.sync(name, &plan);
                r.runtime.set_plan(plan);
            }
            r.runtime.counters.tick(elapsed);
            for b in &r.runtime.plan().backends {
                b.state.counters.tick(elapsed);
            }
        }
    }

    /// SIGTERM: stop accepting, wait for connections up to the drain timeout.
    async fn shutdown(mut self) {
        let names: Vec<String> = self.servers.keys().cloned().collect();
        let mut waits = std::mem::take(&mut self.draining);
        for name in names {
            if let Some(r) = self.servers.remove(&name) {
                r.stop.send_replace(true);
                let timeout = r.runtime.plan().config.drain_timeout;
                waits.push(tokio::spawn(drain(r.runtime, timeout)));
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
}

/// A discovered list without the host names a udp server cannot use (each
/// skipped one is logged; `sni=` values are checked by [`Plan::build`]).
fn usable(name: &str, cfg: &Server, specs: &[BackendSpec]) -> Vec<BackendSpec> {
    if cfg.protocol != Protocol::Udp {
        return specs.to_vec();
    }
    let (ips, names) = crate::discovery::udp_usable(specs);
    log_skipped(name, &names);
    ips
}

/// [`Plan::build`] for a daemon's server: backends left out are logged.
fn plan(name: &str, cfg: Arc<Server>, specs: &[BackendSpec], previous: Option<&Plan>) -> Plan {
    let (plan, skipped) = Plan::build(cfg, specs, previous);
    log_skipped(name, &skipped);
    plan
}

fn log_skipped(name: &str, warnings: &[String]) {
    for w in warnings {
        warn!(name, "discovery: {w}");
    }
}

/// Wait for a stopped server's connections, then close what is left.
async fn drain(runtime: Arc<ServerRuntime>, timeout: Duration) {
    if tokio::time::timeout(timeout, runtime.tracker.idle())
        .await
        .is_err()
    {
        warn!(
            &runtime.name,
            "drain timeout: closing {} connection(s)",
            runtime.tracker.open()
        );
        runtime.tracker.kill_all();
        let _ = tokio::time::timeout(Duration::from_secs(1), runtime.tracker.idle()).await;
    }
}

/// Take a TCP listener out of LISTEN now (connections in its accept queue
/// are reset, as a close would): the port is free for a start that follows,
/// though the accept task drops its own descriptor only when next polled.
fn close_listener(fd: &OwnedFd) {
    let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Read);
}

/// How the main loop ended: SIGTERM (drain) or SIGINT.
enum Exit {
    Graceful,
    Now,
}

fn plan_len(runtime: &ServerRuntime) -> usize {
    runtime.plan().backends.len()
}

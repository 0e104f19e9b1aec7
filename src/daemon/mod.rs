//! Process lifecycle: start servers, handle signals, reload by diff, drain.
//!
//! - SIGHUP: re-read the config source. Invalid: log every error, keep
//!   running the old config. Valid: apply [`crate::state::diff::diff`].
//! - SIGTERM: close listeners, let connections finish up to the largest
//!   `drain_timeout`, close the rest, exit 0.
//! - SIGINT: exit at once, also during a SIGTERM drain.

use std::collections::BTreeMap;
use std::io;
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
use crate::state::diff::{Op, diff};
use crate::state::saved::{self, Saved, SavedBackend};
use crate::state::{Plan, ServerRuntime};
use crate::{error, info, warn};

mod gate;
mod persist;
mod signals;
mod source;

use gate::build_edges;
pub use gate::{file_errors, unsupported};
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
    fn start(
        &mut self,
        name: &str,
        cfg: &Server,
        contexts: Option<Contexts>,
        previous: Option<&Plan>,
    ) -> io::Result<()> {
        enum Bound {
            Tcp(tokio::net::TcpListener),
            Udp(tokio::net::UdpSocket),
        }
        let bound = match &cfg.udp {
            Some(u) => Bound::Udp(udp::bind(cfg.bind, u.transparent)?),
            None => Bound::Tcp(tcp::bind(cfg.bind)?),
        };
        let specs = match (previous, &cfg.discovery.kind) {
            (Some(old), DiscoveryKind::Exec { .. } | DiscoveryKind::Other { .. }) => {
                sni_usable(name, cfg, &old.specs())
            }
            _ => initial_specs(&cfg.discovery).to_vec(),
        };
        let plan = Plan::new(Arc::new(cfg.clone()), &specs, previous);
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
    /// Returns the server's last plan.
    fn stop(&mut self, name: &str) -> Option<Arc<Plan>> {
        self.health.stop(name);
        self.discovery.stop(name);
        if let Some(saved) = &mut self.restore {
            saved.backends.retain(|b| b.server != name);
        }
        let r = self.servers.remove(name)?;
        if let Some(fd) = &r.listener {
            // Out of LISTEN now (pending connections are reset, as a close
            // would); the port is free for a start that follows.
            let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Read);
        }
        let plan = r.runtime.plan();
        r.stop.send_replace(true);
        info!(
            name,
            "stopped; draining {} connection(s)",
            r.runtime.tracker.open()
        );
        self.draining.retain(|d| !d.is_finished());
        (self.draining).push(tokio::spawn(drain(r.runtime, plan.config.drain_timeout)));
        Some(plan)
    }

    fn update(&mut self, name: &str, cfg: &Server) {
        if let Some(r) = self.servers.get(name) {
            let old = r.runtime.plan();
            // A dynamic kind keeps its last list until its (re)started task
            // sends a new one.
            let specs = match &cfg.discovery.kind {
                DiscoveryKind::Static { backends } => backends.clone(),
                DiscoveryKind::Exec { .. } | DiscoveryKind::Other { .. } => {
                    sni_usable(name, cfg, &old.specs())
                }
            };
            if cfg.sockmap && !old.config.sockmap {
                sockmap::prepare(name);
            }
            let plan = Plan::new(Arc::new(cfg.clone()), &specs, Some(&old));
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
        for op in diff(&running, &new.servers) {
            match op {
                Op::Stop(name) => {
                    if let Some(plan) = self.stop(&name) {
                        stopped.insert(name, plan);
                    }
                }
                Op::Update(name) => self.update(&name, &new.servers[&name]),
                Op::Start(name) => {
                    let contexts = edges.remove(&name);
                    let previous = stopped.get(&name).map(|p| &**p);
                    if let Err(e) = self.start(&name, &new.servers[&name], contexts, previous) {
                        error!(&name, "cannot listen on {}: {e}", new.servers[&name].bind);
                        self.failed.insert(name.clone(), e.to_string());
                    } else {
                        self.failed.remove(&name);
                    }
                }
            }
        }
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
            let specs = sni_usable(&update.server, &old.config, &update.specs);
            let plan = Plan::new(Arc::clone(&old.config), &specs, Some(&old));
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

/// A discovered list without the backends this server cannot use (each
/// skipped one is logged): an `sni=` regexp that does not compile, a host
/// name on a udp server.
fn sni_usable(name: &str, cfg: &Server, specs: &[BackendSpec]) -> Vec<BackendSpec> {
    let (mut kept, mut warnings) = match &cfg.sni {
        Some(sni) => crate::proxy::sni::usable_backends(sni.hostname_matching_strategy, specs),
        None => (specs.to_vec(), Vec::new()),
    };
    if cfg.protocol == Protocol::Udp {
        let (ips, names) = crate::discovery::udp_usable(&kept);
        kept = ips;
        warnings.extend(names);
    }
    for w in warnings {
        warn!(name, "discovery: {w}");
    }
    kept
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

/// One worker thread per CPU this process may run on; with a single CPU the
/// current-thread scheduler, which skips work-stealing bookkeeping.
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()
    }
}

/// Run the daemon until a signal ends it; returns the exit code.
pub fn run(source: Source, loaded: Loaded, pidfile: Option<PathBuf>) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("betwixt: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(serve(source, loaded, pidfile.clone()));
    // Only a pidfile that still names this process: a start that failed
    // before writing it must not delete another instance's.
    if let Some(p) = pidfile
        && std::fs::read_to_string(&p).is_ok_and(|t| t.trim() == std::process::id().to_string())
    {
        let _ = std::fs::remove_file(p);
    }
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn serve(source: Source, loaded: Loaded, pidfile: Option<PathBuf>) -> i32 {
    if let Err(e) = crate::log::configure(&loaded.config.logging) {
        eprintln!("betwixt: logging: {e}");
        return 1;
    }
    for w in &loaded.warnings {
        warn!("config", "{w}");
    }
    let mut sigs = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("main", "signals: {e}");
            return 1;
        }
    };
    let restore = read_state(&loaded.config);
    let (effective, overlay) = with_overlay(&loaded, restore.as_ref());
    let shared = Arc::new(Shared::new(
        source.path.display().to_string(),
        effective.raw.clone(),
    ));
    let mut daemon = Daemon {
        config: effective.config.clone(),
        servers: BTreeMap::new(),
        health: Supervisor::new(Context::new(loaded.config.max_exec_checks)),
        file_raw: loaded.raw.clone(),
        overlay,
        shared: Arc::clone(&shared),
        failed: BTreeMap::new(),
        written: restore.clone().unwrap_or_default(),
        restore,
        discovery: Discovery::default(),
        draining: Vec::new(),
    };
    for (name, cfg) in &effective.config.servers {
        let contexts = match Contexts::build(cfg) {
            Ok(c) => c,
            Err(e) => {
                error!("config", "servers.{name}.{e}");
                return 1;
            }
        };
        if let Err(e) = daemon.start(name, cfg, Some(contexts), None) {
            error!(name, "cannot listen on {}: {e}", cfg.bind);
            return 1;
        }
    }
    // Saved backends of dynamic servers wait for their discovered lists.
    let dynamic = |server: &str| {
        daemon
            .config
            .servers
            .get(server)
            .is_some_and(|c| !matches!(c.discovery.kind, DiscoveryKind::Static { .. }))
    };
    let pending = daemon.restore.take().map(|mut saved| {
        saved.backends.retain(|b| dynamic(&b.server));
        saved
    });
    daemon.restore = pending;
    daemon.publish(effective.raw);
    tokio::spawn(crate::proxy::session::anchor_timers());
    let (tx, mut commands) = mpsc::channel(16);
    if let Err(e) = start_http(&daemon.config, &shared, tx.clone()) {
        error!("api", "{e}");
        return 1;
    }
    if let Some(p) = &pidfile
        && let Err(e) = std::fs::write(p, format!("{}\n", std::process::id()))
    {
        error!("main", "pidfile {}: {e}", p.display());
        return 1;
    }
    info!(
        "main",
        "betwixt {} started, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    match signals::signals(&mut daemon, &source, &mut commands, &mut sigs).await {
        Ok(Exit::Graceful) => {
            info!("main", "SIGTERM: draining");
            refuse_commands(&mut commands);
            tokio::select! {
                _ = daemon.shutdown() => info!("main", "exit"),
                _ = sigs.int.recv() => info!("main", "SIGINT: exit without waiting for the drain"),
            }
            0
        }
        Ok(Exit::Now) => {
            info!("main", "SIGINT: exit");
            0
        }
        Err(e) => {
            error!("main", "signals: {e}");
            1
        }
    }
}

/// While draining, API changes get `503` at once instead of waiting for
/// the drain to end.
fn refuse_commands(commands: &mut mpsc::Receiver<api::Command>) {
    commands.close();
    while let Ok(c) = commands.try_recv() {
        let _ = c
            .reply
            .send(api::Reply::error(503, "the daemon is shutting down"));
    }
}

enum Exit {
    Graceful,
    Now,
}

fn plan_len(runtime: &ServerRuntime) -> usize {
    runtime.plan().backends.len()
}

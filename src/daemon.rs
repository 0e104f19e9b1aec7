//! Process lifecycle: start servers, handle signals, reload by diff, drain.
//!
//! - SIGHUP: re-read the config source. Invalid: log every error, keep
//!   running the old config. Valid: apply [`crate::state::diff::diff`].
//! - SIGTERM: close listeners, let connections finish up to the largest
//!   `drain_timeout`, close the rest, exit 0.
//! - SIGINT: exit at once.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{
    self, Check, Config, ConfigError, DiscoveryKind, Format, Loaded, ProbeProtocol, Protocol,
    Server,
};
use crate::discovery::BackendSpec;
use crate::health::runner::Supervisor;
use crate::metrics::RATE_WINDOW;
use crate::proxy::tls::{Contexts, Edge};
use crate::proxy::{tcp, udp};
use crate::state::diff::{Op, diff};
use crate::state::{Plan, ServerRuntime};
use crate::{error, info, warn};

/// Where the config comes from, so SIGHUP can read it again.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
    pub env_vars: bool,
}

impl Source {
    /// Read, substitute, parse and validate; every problem as one line.
    pub fn load(&self) -> Result<Loaded, Vec<String>> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| vec![format!("{}: {e}", self.path.display())])?;
        let text = if self.env_vars {
            config::substitute_env(&text)
        } else {
            text
        };
        let loaded = config::parse(&text, self.format).map_err(lines)?;
        let missing = unsupported(&loaded.config);
        if missing.is_empty() {
            Ok(loaded)
        } else {
            Err(lines(missing))
        }
    }
}

fn lines(errors: Vec<ConfigError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// Valid settings this build cannot run yet: starting with them would
/// silently do something else, so they are errors.
pub fn unsupported(cfg: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for (name, s) in &cfg.servers {
        let mut no = |key: &str, what: String| {
            out.push(ConfigError {
                path: format!("servers.{name}.{key}"),
                message: format!("{what} is not supported by this build yet"),
            })
        };
        if cfg!(not(feature = "tls")) {
            if s.protocol == Protocol::Tls {
                no("protocol", "protocol tls (feature \"tls\")".into());
            }
            if s.backends_tls.is_some() {
                no("backends_tls", "backends_tls (feature \"tls\")".into());
            }
        }
        if let DiscoveryKind::Other { kind, .. } = &s.discovery.kind {
            no("discovery.kind", format!("discovery kind \"{kind}\""));
        }
        if !health_supported(&s.healthcheck.check) {
            no(
                "healthcheck.kind",
                format!("health check kind \"{}\"", s.healthcheck.kind),
            );
        }
    }
    out
}

fn health_supported(check: &Check) -> bool {
    match check {
        Check::None | Check::Ping => true,
        Check::Probe(p) => p.protocol != ProbeProtocol::Tls,
        _ => false,
    }
}

/// Settings that are accepted but do nothing yet: warned about at start.
fn inert_warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.api.enabled {
        out.push(
            "[api] is enabled but the management API is not in this build yet; ignored".into(),
        );
    }
    if cfg.metrics.enabled {
        out.push("[metrics] is enabled but metrics are not in this build yet; ignored".into());
    }
    out
}

fn static_backends(s: &Server) -> &[BackendSpec] {
    match &s.discovery.kind {
        DiscoveryKind::Static { backends } => backends,
        DiscoveryKind::Other { .. } => &[],
    }
}

/// A server with a bound listener.
struct Running {
    runtime: Arc<ServerRuntime>,
    stop: watch::Sender<bool>,
    /// TLS configurations (tcp and tls servers), rebuilt on every reload.
    edge: Option<Arc<Edge>>,
}

/// TLS configurations of every tcp/tls server, certificate files read now;
/// the errors name the server.
fn build_edges(cfg: &Config) -> Result<BTreeMap<String, Contexts>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, s) in &cfg.servers {
        if s.protocol == Protocol::Udp {
            continue;
        }
        match Contexts::build(s) {
            Ok(c) => {
                out.insert(name.clone(), c);
            }
            Err(e) => errors.push(format!("servers.{name}.{e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

struct Daemon {
    config: Config,
    servers: BTreeMap<String, Running>,
    health: Supervisor,
}

impl Daemon {
    fn start(&mut self, name: &str, cfg: &Server, contexts: Option<Contexts>) -> io::Result<()> {
        enum Bound {
            Tcp(tokio::net::TcpListener),
            Udp(tokio::net::UdpSocket),
        }
        let bound = match &cfg.udp {
            Some(u) => Bound::Udp(udp::bind(cfg.bind, u.transparent)?),
            None => Bound::Tcp(tcp::bind(cfg.bind)?),
        };
        let plan = Plan::new(Arc::new(cfg.clone()), static_backends(cfg), None);
        self.health.sync(name, &plan);
        let runtime = Arc::new(ServerRuntime::new(name.to_string(), plan));
        let (stop, stopped) = watch::channel(false);
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
            static_backends(cfg).len()
        );
        self.servers.insert(
            name.to_string(),
            Running {
                runtime,
                stop,
                edge,
            },
        );
        Ok(())
    }

    /// Close the listener; open connections drain in the background.
    fn stop(&mut self, name: &str) {
        self.health.stop(name);
        if let Some(r) = self.servers.remove(name) {
            r.stop.send_replace(true);
            let timeout = r.runtime.plan().config.drain_timeout;
            info!(
                name,
                "stopped; draining {} connections",
                r.runtime.tracker.open()
            );
            tokio::spawn(drain(r.runtime, timeout));
        }
    }

    fn update(&mut self, name: &str, cfg: &Server) {
        if let Some(r) = self.servers.get(name) {
            let old = r.runtime.plan();
            let plan = Plan::new(Arc::new(cfg.clone()), static_backends(cfg), Some(&old));
            self.health.sync(name, &plan);
            r.runtime.set_plan(plan);
            info!(name, "updated in place");
        }
    }

    /// Apply a new valid config as a diff; `edges` are its servers' new TLS
    /// configurations (also swapped into unchanged servers: new certificates).
    fn apply(&mut self, new: Config, mut edges: BTreeMap<String, Contexts>) {
        if new.logging != self.config.logging
            && let Err(e) = crate::log::configure(&new.logging)
        {
            error!("config", "logging: {e}; keeping the previous logger");
        }
        for op in diff(&self.config.servers, &new.servers) {
            match op {
                Op::Stop(name) => self.stop(&name),
                Op::Update(name) => self.update(&name, &new.servers[&name]),
                Op::Start(name) => {
                    let contexts = edges.remove(&name);
                    if let Err(e) = self.start(&name, &new.servers[&name], contexts) {
                        error!(&name, "cannot listen on {}: {e}", new.servers[&name].bind);
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
    }

    fn tick(&self, elapsed: Duration) {
        for r in self.servers.values() {
            r.runtime.counters.tick(elapsed);
            for b in &r.runtime.plan().backends {
                b.state.counters.tick(elapsed);
            }
        }
    }

    /// SIGTERM: stop accepting, wait for connections up to the drain timeout.
    async fn shutdown(mut self) {
        let names: Vec<String> = self.servers.keys().cloned().collect();
        let mut waits = Vec::new();
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

/// Wait for a stopped server's connections, then close what is left.
async fn drain(runtime: Arc<ServerRuntime>, timeout: Duration) {
    if tokio::time::timeout(timeout, runtime.tracker.idle())
        .await
        .is_err()
    {
        warn!(
            &runtime.name,
            "drain timeout: closing {} connections",
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
    if let Some(p) = pidfile {
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
    for w in loaded
        .warnings
        .iter()
        .chain(&inert_warnings(&loaded.config))
    {
        warn!("config", "{w}");
    }
    let mut daemon = Daemon {
        config: loaded.config.clone(),
        servers: BTreeMap::new(),
        health: Supervisor::default(),
    };
    let mut edges = match build_edges(&loaded.config) {
        Ok(edges) => edges,
        Err(errors) => {
            for e in errors {
                error!("config", "{e}");
            }
            return 1;
        }
    };
    for (name, cfg) in &loaded.config.servers {
        if let Err(e) = daemon.start(name, cfg, edges.remove(name)) {
            error!(name, "cannot listen on {}: {e}", cfg.bind);
            return 1;
        }
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
    match signals(&mut daemon, &source).await {
        Ok(Exit::Graceful) => {
            info!("main", "SIGTERM: draining");
            daemon.shutdown().await;
            info!("main", "exit");
            0
        }
        Ok(Exit::Now) => 0,
        Err(e) => {
            error!("main", "signals: {e}");
            1
        }
    }
}

enum Exit {
    Graceful,
    Now,
}

async fn signals(daemon: &mut Daemon, source: &Source) -> io::Result<Exit> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(RATE_WINDOW);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = hup.recv() => reload(daemon, source),
            _ = term.recv() => return Ok(Exit::Graceful),
            _ = int.recv() => return Ok(Exit::Now),
            _ = ticker.tick() => {
                daemon.tick(last.elapsed());
                last = Instant::now();
            }
        }
    }
}

fn reload(daemon: &mut Daemon, source: &Source) {
    info!("main", "SIGHUP: reloading {}", source.path.display());
    match source
        .load()
        .and_then(|l| build_edges(&l.config).map(|e| (l, e)))
    {
        Ok((loaded, edges)) => {
            for w in &loaded.warnings {
                warn!("config", "{w}");
            }
            daemon.apply(loaded.config, edges);
            info!("main", "reload applied");
        }
        Err(errors) => {
            for e in &errors {
                error!("config", "{e}");
            }
            error!(
                "main",
                "reload rejected ({} errors); still running the previous config",
                errors.len()
            );
        }
    }
}

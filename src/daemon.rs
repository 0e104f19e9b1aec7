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
use tokio::sync::{mpsc, watch};

use crate::api::control::{self, Control};
use crate::api::overlay::{self, Overlay};
use crate::api::{self, Shared};
use crate::config::raw::RawConfig;
use crate::config::{
    self, Check, Config, ConfigError, DiscoveryKind, Format, Loaded, ProbeProtocol, Protocol,
    Server,
};
use crate::discovery::BackendSpec;
use crate::health::Context;
use crate::health::runner::Supervisor;
use crate::metrics::RATE_WINDOW;
use crate::proxy::tcp;
use crate::state::diff::{Op, diff};
use crate::state::saved::{self, Saved};
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
    if cfg!(not(feature = "tls")) && cfg.api.enabled && cfg.api.tls.is_some() {
        out.push(ConfigError {
            path: "api.tls".into(),
            message: "HTTPS for the API needs the \"tls\" feature, which this build does not have"
                .into(),
        });
    }
    for (name, s) in &cfg.servers {
        let mut no = |key: &str, what: String| {
            out.push(ConfigError {
                path: format!("servers.{name}.{key}"),
                message: format!("{what} is not supported by this build yet"),
            })
        };
        if s.protocol != Protocol::Tcp {
            no(
                "protocol",
                format!("protocol {:?}", s.protocol).to_lowercase(),
            );
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
        if let Some((key, what)) = health_tls(&s.healthcheck.check)
            && !cfg!(feature = "tls")
        {
            out.push(ConfigError {
                path: format!("servers.{name}.healthcheck.{key}"),
                message: format!("{what} needs TLS, which this build lacks (feature \"tls\")"),
            });
        }
    }
    out
}

/// The key and setting of a check that needs TLS.
fn health_tls(check: &Check) -> Option<(&'static str, &'static str)> {
    match check {
        Check::Probe(p) if p.protocol == ProbeProtocol::Tls => {
            Some(("probe_protocol", "probe_protocol \"tls\""))
        }
        Check::Http(h) if h.tls => Some(("tls", "tls = true")),
        Check::Webhook { url, .. }
            if url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://")) =>
        {
            Some(("webhook_url", "an https webhook_url"))
        }
        _ => None,
    }
}

fn health_supported(check: &Check) -> bool {
    matches!(
        check,
        Check::None
            | Check::Ping
            | Check::Probe(_)
            | Check::Http(_)
            | Check::Webhook { .. }
            | Check::Exec { .. }
            | Check::Script(_)
            | Check::Icmp { .. }
    )
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
}

struct Daemon {
    config: Config,
    servers: BTreeMap<String, Running>,
    health: Supervisor,
    /// The config file as parsed; the API overlay is laid over it.
    file_raw: RawConfig,
    overlay: Overlay,
    /// What the API threads read.
    shared: Arc<Shared>,
    /// Configured servers that could not listen.
    failed: BTreeMap<String, String>,
    /// The state file's content at start (applied as servers start), and
    /// what was last written.
    restore: Option<Saved>,
    written: Saved,
}

impl Daemon {
    fn start(&mut self, name: &str, cfg: &Server) -> io::Result<()> {
        let listener = tcp::bind(cfg.bind)?;
        let plan = Plan::new(Arc::new(cfg.clone()), static_backends(cfg), None);
        let max_age = self.config.api.state_max_age.as_millis() as u64;
        let restore = |plan: &Plan| {
            if let Some(saved) = &self.restore {
                control::restore(saved, name, plan, max_age);
            }
        };
        restore(&plan);
        self.health.sync(name, &plan);
        restore(&plan);
        let runtime = Arc::new(ServerRuntime::new(name.to_string(), plan));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(tcp::serve(listener, Arc::clone(&runtime), stopped));
        info!(
            name,
            "listening on {} ({}, {} backends)",
            cfg.bind,
            cfg.balance.name(),
            static_backends(cfg).len()
        );
        self.servers
            .insert(name.to_string(), Running { runtime, stop });
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

    /// Apply a new valid config as a diff; servers that failed to start by name.
    fn apply(&mut self, loaded: Loaded) -> BTreeMap<String, String> {
        let new = loaded.config;
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
        for op in diff(&self.config.servers, &new.servers) {
            match op {
                Op::Stop(name) => self.stop(&name),
                Op::Update(name) => self.update(&name, &new.servers[&name]),
                Op::Start(name) => {
                    if let Err(e) = self.start(&name, &new.servers[&name]) {
                        error!(&name, "cannot listen on {}: {e}", new.servers[&name].bind);
                        self.failed.insert(name.clone(), e.to_string());
                    } else {
                        self.failed.remove(&name);
                    }
                }
            }
        }
        self.config = new;
        self.publish(loaded.raw);
        self.persist();
        self.failed.clone()
    }

    fn publish(&self, raw: RawConfig) {
        let servers = self
            .servers
            .iter()
            .map(|(n, r)| (n.clone(), Arc::clone(&r.runtime)))
            .collect();
        self.shared.publish(servers, raw, self.failed.clone());
    }

    /// Write the state file if its content changed.
    fn persist(&mut self) {
        let Some(path) = &self.config.api.state_file else {
            return;
        };
        let runtimes: Vec<_> = self
            .servers
            .values()
            .map(|r| Arc::clone(&r.runtime))
            .collect();
        let now = control::snapshot(&self.overlay, &runtimes);
        if now.same(&self.written) {
            return;
        }
        match saved::write(path, &now) {
            Ok(()) => self.written = now,
            Err(e) => warn!("state", "cannot write {}: {e}", path.display()),
        }
    }

    fn tick(&mut self, elapsed: Duration) {
        self.persist();
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
    for w in &loaded.warnings {
        warn!("config", "{w}");
    }
    let restore = read_state(&loaded.config);
    let (effective, overlay) = with_overlay(&loaded, restore.as_ref());
    let shared = Arc::new(Shared::new(
        source.path.display().to_string(),
        effective.raw.clone(),
    ));
    let mut daemon = Daemon {
        config: effective.config.clone(),
        servers: BTreeMap::new(),
        health: Supervisor::new(Context::new(effective.config.max_exec_checks)),
        file_raw: loaded.raw.clone(),
        overlay,
        shared: Arc::clone(&shared),
        failed: BTreeMap::new(),
        written: restore.clone().unwrap_or_default(),
        restore,
    };
    for (name, cfg) in &effective.config.servers {
        if let Err(e) = daemon.start(name, cfg) {
            error!(name, "cannot listen on {}: {e}", cfg.bind);
            return 1;
        }
    }
    daemon.restore = None;
    daemon.publish(effective.raw);
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
    match signals(&mut daemon, &source, &mut commands).await {
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

/// The API and metrics listeners, if enabled.
fn start_http(cfg: &Config, shared: &Arc<Shared>, tx: api::Commands) -> io::Result<()> {
    if cfg.api.enabled {
        api::spawn_api(&cfg.api, Arc::clone(shared), tx).map_err(|e| {
            io::Error::other(format!("api: cannot listen on {}: {e}", cfg.api.bind))
        })?;
    }
    if cfg.metrics.enabled {
        api::spawn_metrics(cfg.metrics.bind, Arc::clone(shared)).map_err(|e| {
            io::Error::other(format!(
                "metrics: cannot listen on {}: {e}",
                cfg.metrics.bind
            ))
        })?;
    }
    Ok(())
}

/// The state file, if configured and usable (a bad one is reported and ignored).
fn read_state(cfg: &Config) -> Option<Saved> {
    let path = cfg.api.state_file.as_ref()?;
    match saved::read(path) {
        Ok(s) => s,
        Err(e) => {
            warn!("state", "ignoring {}: {e}", path.display());
            None
        }
    }
}

/// The file config with the saved API overlay laid over it (dropped, with a
/// warning, if the result is invalid).
fn with_overlay(loaded: &Loaded, saved: Option<&Saved>) -> (Loaded, Overlay) {
    let overlay = saved.map(control::saved_overlay).unwrap_or_default();
    if overlay.is_empty() {
        return (loaded.clone(), overlay);
    }
    match overlay::merge(&loaded.raw, &overlay) {
        Ok(l) => (l, overlay),
        Err(errors) => {
            for e in &errors {
                warn!("state", "saved API changes do not apply: {e}");
            }
            (loaded.clone(), Overlay::new())
        }
    }
}

async fn signals(
    daemon: &mut Daemon,
    source: &Source,
    commands: &mut mpsc::Receiver<api::Command>,
) -> io::Result<Exit> {
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
            Some(cmd) = commands.recv() => {
                let reply = control::execute(daemon, cmd.op);
                let _ = cmd.reply.send(reply);
            }
            _ = ticker.tick() => {
                daemon.tick(last.elapsed());
                last = Instant::now();
            }
        }
    }
}

fn reload(daemon: &mut Daemon, source: &Source) {
    info!("main", "SIGHUP: reloading {}", source.path.display());
    match source.load() {
        Ok(loaded) => {
            for w in &loaded.warnings {
                warn!("config", "{w}");
            }
            if loaded.config.api != daemon.config.api
                || loaded.config.metrics != daemon.config.metrics
            {
                warn!(
                    "config",
                    "[api] and [metrics] changes take effect at restart"
                );
            }
            daemon.file_raw = loaded.raw.clone();
            match overlay::merge(&loaded.raw, &daemon.overlay) {
                Ok(merged) => {
                    daemon.apply(merged);
                    info!("main", "reload applied");
                }
                Err(errors) => {
                    for e in &errors {
                        error!("config", "with the API's changes: {e}");
                    }
                    error!("main", "reload rejected; still running the previous config");
                }
            }
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

impl Control for Daemon {
    fn config(&self) -> &Config {
        &self.config
    }

    fn file_raw(&self) -> &RawConfig {
        &self.file_raw
    }

    fn overlay_mut(&mut self) -> &mut Overlay {
        &mut self.overlay
    }

    fn apply(&mut self, loaded: Loaded) -> BTreeMap<String, String> {
        Daemon::apply(self, loaded)
    }

    fn runtime(&self, name: &str) -> Option<Arc<ServerRuntime>> {
        self.servers.get(name).map(|r| Arc::clone(&r.runtime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(hc: &str) -> Vec<String> {
        let text = format!(
            "[servers.web]\nbind = \"127.0.0.1:8080\"\n[servers.web.discovery]\nkind = \"static\"\n\
             static_list = [\"127.0.0.1:80\"]\n[servers.web.healthcheck]\ninterval = \"1s\"\n{hc}\n"
        );
        match config::parse(&text, config::Format::Toml) {
            Ok(l) => lines(unsupported(&l.config)),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn api_tls_runs_when_tls_is_built_in() {
        let text = "[api]\nenabled = true\n[api.tls]\ncert_path = \"c\"\nkey_path = \"k\"\n";
        let loaded = config::parse(text, config::Format::Toml).unwrap();
        let errors = lines(unsupported(&loaded.config));
        if cfg!(feature = "tls") {
            assert!(errors.is_empty(), "{errors:?}");
        } else {
            assert!(
                errors[0].starts_with("api.tls: ") && errors[0].contains("\"tls\" feature"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn http_webhook_and_tls_checks_run_when_tls_is_built_in() {
        let plain = [
            "kind = \"http\"",
            "kind = \"webhook\"\nwebhook_url = \"http://127.0.0.1:9/x\"",
        ];
        for hc in plain {
            assert!(refused(hc).is_empty(), "{hc}: {:?}", refused(hc));
        }
        let tls = [
            ("kind = \"http\"\ntls = true", "healthcheck.tls"),
            (
                "kind = \"webhook\"\nwebhook_url = \"https://127.0.0.1/\"",
                "healthcheck.webhook_url",
            ),
            (
                "kind = \"probe\"\nprobe_protocol = \"tls\"\nprobe_send = \"a\"\nprobe_recv = \"b\"",
                "healthcheck.probe_protocol",
            ),
        ];
        for (hc, key) in tls {
            let errors = refused(hc);
            if cfg!(feature = "tls") {
                assert!(errors.is_empty(), "{hc}: {errors:?}");
            } else {
                let want = format!("servers.web.{key}: ");
                assert!(
                    errors
                        .iter()
                        .any(|e| e.starts_with(&want) && e.contains("feature \"tls\"")),
                    "{errors:?}"
                );
            }
        }
    }
}

//! Start-up and shutdown: the runtime, the servers of the first config,
//! the API, the pidfile, then the main loop ([`super::signals`]) until a
//! signal, and the drain.

use super::*;

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
        if let Err(e) = daemon.start(name, cfg, Some(contexts), None, None) {
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

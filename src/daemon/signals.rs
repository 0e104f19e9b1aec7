//! The main loop: signals, API commands, discovery updates, the ticker; SIGHUP reload.

use super::*;
use tokio::signal::unix::Signal;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// SIGHUP, SIGTERM and SIGINT streams. Installed before the first listener
/// opens: a signal sent as soon as a port accepts is then handled, not fatal
/// (the default action of SIGTERM and SIGINT kills the process).
pub(super) struct Signals {
    hup: Signal,
    term: Signal,
    /// Also read during a drain: SIGINT ends it at once.
    pub(super) int: Signal,
}

impl Signals {
    pub(super) fn install() -> io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

pub(super) async fn signals(
    daemon: &mut Daemon,
    source: &Source,
    commands: &mut mpsc::Receiver<api::Command>,
    sigs: &mut Signals,
) -> io::Result<Exit> {
    let Signals { hup, term, int } = sigs;
    let mut ticker = tokio::time::interval(RATE_WINDOW);
    let mut last = Instant::now();
    let mut updates = daemon.discovery.take_updates();
    // A reload reads its source in a task of its own (a config server may
    // take up to 10 s): signals, API commands and discovery go on meanwhile.
    // A SIGHUP during a read reads again after it.
    let mut reading: Option<JoinHandle<Reloaded>> = None;
    let mut again = false;
    // An API change merges on the blocking pool too (bind names resolved).
    // Until it is applied, no other command is taken and no reload is
    // applied, so the file config and the overlay it merged stay current.
    let mut changing: Option<Changing> = None;
    loop {
        tokio::select! {
            Some(u) = recv(&mut updates) => daemon.discovered(u),
            _ = hup.recv() => match reading {
                Some(_) => again = true,
                None => reading = Some(read(source, &daemon.overlay)),
            },
            done = merged(&mut changing) => {
                if let Some((merged, reply)) = done {
                    let _ = reply.send(control::finish(daemon, merged));
                }
            }
            loaded = finished(&mut reading), if changing.is_none() => {
                reload(daemon, loaded);
                if std::mem::take(&mut again) {
                    reading = Some(read(source, &daemon.overlay));
                }
            }
            _ = term.recv() => return Ok(Exit::Graceful),
            _ = int.recv() => return Ok(Exit::Now),
            Some(cmd) = commands.recv(), if changing.is_none() => match control::begin(daemon, cmd.op) {
                control::Step::Reply(reply) => {
                    let _ = cmd.reply.send(reply);
                }
                control::Step::Merge(m) => {
                    changing = Some((tokio::task::spawn_blocking(move || m.run()), cmd.reply));
                }
            },
            _ = ticker.tick() => {
                daemon.tick(last.elapsed());
                last = Instant::now();
            }
        }
    }
}

pub(super) async fn recv(updates: &mut Option<UnboundedReceiver<Update>>) -> Option<Update> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What a reload read: the file's config and, merged with the API's
/// overlay as it was when the read started, the config to run; or every
/// problem.
pub(super) struct Read {
    loaded: Loaded,
    overlay: Overlay,
    merged: Result<Loaded, Vec<ConfigError>>,
}

type Reloaded = Result<Read, Vec<String>>;

/// SIGHUP: re-read the API certificate, and start reading the config.
fn read(source: &Source, overlay: &Overlay) -> JoinHandle<Reloaded> {
    info!("main", "SIGHUP: reloading {}", source.path.display());
    #[cfg(feature = "tls")]
    match api::tls::reload() {
        Some(Ok(pair)) => info!("api", "tls: re-read {}", pair.cert_path.display()),
        Some(Err(e)) => error!("api", "tls: {e}; still serving the previous certificate"),
        None => {}
    }
    let (source, overlay) = (source.clone(), overlay.clone());
    tokio::spawn(async move {
        let loaded = source.load_async().await?;
        // The merge parses again (resolving bind names): off the runtime too.
        let merge = move || {
            let merged = overlay::merge(&loaded.raw, &overlay);
            Read {
                loaded,
                overlay,
                merged,
            }
        };
        tokio::task::spawn_blocking(merge)
            .await
            .map_err(|e| vec![format!("reading the config failed: {e}")])
    })
}

/// Where an API request waits for its answer.
type Answer = oneshot::Sender<api::Reply>;
/// An API change whose merge runs.
type Changing = (JoinHandle<control::Merged>, Answer);

/// The running API merge's result and where to answer; `None` when the
/// merge task failed (its caller gets no answer: the API says so).
async fn merged(changing: &mut Option<Changing>) -> Option<(control::Merged, Answer)> {
    let Some((task, _)) = changing else {
        return std::future::pending().await;
    };
    let result = task.await;
    let (_, reply) = changing.take()?;
    match result {
        Ok(merged) => Some((merged, reply)),
        Err(e) => {
            error!("api", "a change could not be checked: {e}");
            None
        }
    }
}

/// The result of the running read, if any (cancel-safe).
async fn finished(reading: &mut Option<JoinHandle<Reloaded>>) -> Reloaded {
    let Some(task) = reading else {
        return std::future::pending().await;
    };
    let result = task
        .await
        .unwrap_or_else(|e| Err(vec![format!("reading the config failed: {e}")]));
    *reading = None;
    result
}

/// Apply what a reload read.
pub(super) fn reload(daemon: &mut Daemon, loaded: Reloaded) {
    match loaded {
        Ok(Read {
            loaded,
            overlay: seen,
            merged,
        }) => {
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
            // The API changed a server while the file was read: merge again.
            let merged = match seen == daemon.overlay {
                true => merged,
                false => overlay::merge(&loaded.raw, &daemon.overlay),
            };
            match merged {
                Ok(merged) => {
                    // Certificates are read here: an unreadable one rejects the reload.
                    if let Err(errors) = build_edges(&merged.config) {
                        for (_, e) in &errors {
                            error!("config", "{e}");
                        }
                        error!("main", "reload rejected; still running the previous config");
                        return;
                    }
                    daemon.file_raw = loaded.raw.clone();
                    let failed = daemon.apply(merged);
                    if failed.is_empty() {
                        info!("main", "reload applied");
                    } else {
                        let names: Vec<&str> = failed.keys().map(String::as_str).collect();
                        error!(
                            "main",
                            "reload applied, but not listening: {} (the next SIGHUP tries again)",
                            names.join(", ")
                        );
                    }
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
                "reload rejected ({} error(s)); still running the previous config",
                errors.len()
            );
        }
    }
}

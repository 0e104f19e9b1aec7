//! The I/O side of discovery: one task per server with a dynamic kind, and
//! the [`Supervisor`] that starts, restarts and stops them.
//!
//! Each task sends an [`Update`] over one channel whenever its list
//! changes; the daemon applies it. Updates carry a generation so that a
//! list from a task replaced by a reload is ignored.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use super::policy::{self, FailureLog, canonical, step, to_log};
use super::{BackendSpec, Fetcher, Listing};
use crate::config::{Discovery, FailPolicy};
use crate::{debug, info, warn};

/// A new backend list for a server.
#[derive(Debug)]
pub struct Update {
    pub server: String,
    pub generation: u64,
    pub specs: Vec<BackendSpec>,
}

struct Task {
    discovery: Discovery,
    generation: u64,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Keeps one discovery task per server with a dynamic kind.
pub struct Supervisor {
    tx: UnboundedSender<Update>,
    rx: Option<UnboundedReceiver<Update>>,
    tasks: HashMap<String, Task>,
    generation: u64,
}

impl Default for Supervisor {
    fn default() -> Self {
        let (tx, rx) = unbounded_channel();
        Self {
            tx,
            rx: Some(rx),
            tasks: HashMap::new(),
            generation: 0,
        }
    }
}

impl Supervisor {
    /// The receiving end of every task's updates (once).
    pub fn take_updates(&mut self) -> Option<UnboundedReceiver<Update>> {
        self.rx.take()
    }

    /// Start the task of `server`, or restart it when its discovery settings
    /// changed; stop it for a static kind. `serving` is the list the server
    /// keeps until the task sends one (a reload): the task starts from it,
    /// as if it had sent it.
    pub fn sync(&mut self, server: &str, discovery: &Discovery, serving: Option<&[BackendSpec]>) {
        if self
            .tasks
            .get(server)
            .is_some_and(|t| t.discovery == *discovery)
        {
            return;
        }
        self.tasks.remove(server);
        let fetcher = match Fetcher::of(discovery) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                // Refused at load time (daemon::unsupported); never reached.
                warn!(server, "discovery: {e} is not supported by this build");
                return;
            }
        };
        self.generation += 1;
        let worker = Worker {
            server: server.to_string(),
            generation: self.generation,
            discovery: discovery.clone(),
            fetcher,
            tx: self.tx.clone(),
            serving: serving.map(<[BackendSpec]>::to_vec),
        };
        let task = Task {
            discovery: discovery.clone(),
            generation: self.generation,
            handle: tokio::spawn(worker.run()),
        };
        self.tasks.insert(server.to_string(), task);
    }

    pub fn stop(&mut self, server: &str) {
        self.tasks.remove(server);
    }

    /// Whether `update` comes from the current task of its server.
    pub fn is_current(&self, update: &Update) -> bool {
        self.tasks
            .get(&update.server)
            .is_some_and(|t| t.generation == update.generation)
    }
}

struct Worker {
    server: String,
    generation: u64,
    discovery: Discovery,
    fetcher: Fetcher,
    tx: UnboundedSender<Update>,
    /// The list the server serves when the task starts, if any.
    serving: Option<Vec<BackendSpec>>,
}

impl Worker {
    async fn run(mut self) {
        let mut last: Option<Vec<BackendSpec>> = self.serving.take();
        let name = self.server.as_str();
        let mut last_warnings: (Vec<String>, usize) = (Vec::new(), 0);
        let (mut failures, started) = (FailureLog::default(), std::time::Instant::now());
        loop {
            let result = self.fetch().await.map(|listing| {
                let (specs, dropped, more) = canonical(listing.specs);
                let mut warnings = listing.warnings;
                let mut more = more.saturating_add(listing.more_warnings);
                for w in dropped {
                    policy::note(&mut warnings, &mut more, || w);
                }
                // Compared in order-free form: srv warnings follow the
                // order of the records, which DNS servers rotate.
                let mut seen = warnings.clone();
                seen.sort_unstable();
                if (&seen, more) != (&last_warnings.0, last_warnings.1) {
                    for w in to_log(&warnings, more) {
                        warn!(name, "discovery: {w}");
                    }
                    last_warnings = (seen, more);
                }
                specs
            });
            match &result {
                Err(e) => {
                    let now = started.elapsed().as_millis() as u64;
                    match failures.failed(e, now) {
                        Some(skipped) => self.log_error(e, last.as_deref(), skipped),
                        None => debug!(name, "discovery failed again: {e}"),
                    }
                }
                Ok(_) => {
                    if let Some(run) = failures.succeeded() {
                        info!(name, "discovery works again after {run} failed fetches");
                    }
                }
            }
            let s = step(
                self.discovery.failpolicy,
                self.discovery.interval,
                result,
                last.as_deref(),
            );
            if let Some(specs) = s.send {
                info!(name, "discovery: {} backends", specs.len());
                let update = Update {
                    server: self.server.clone(),
                    generation: self.generation,
                    specs: specs.clone(),
                };
                if self.tx.send(update).is_err() {
                    return;
                }
                last = Some(specs);
            }
            match s.wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return,
            }
        }
    }

    async fn fetch(&self) -> Result<Listing, String> {
        let timeout = self.discovery.timeout;
        if timeout.is_zero() {
            return self.fetcher.fetch().await;
        }
        match tokio::time::timeout(timeout, self.fetcher.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {}", show(timeout))),
        }
    }

    fn log_error(&self, e: &str, last: Option<&[BackendSpec]>, skipped: u64) {
        let name = self.server.as_str();
        let kept = last.map_or(0, <[BackendSpec]>::len);
        let more = crate::log::skipped_note(skipped);
        match self.discovery.failpolicy {
            FailPolicy::KeepLast => {
                warn!(
                    name,
                    "discovery failed: {e}; keeping the last {kept} backends{more}"
                )
            }
            FailPolicy::SetEmpty => {
                warn!(
                    name,
                    "discovery failed: {e}; failpolicy setempty: no backends{more}"
                )
            }
        }
    }
}

fn show(d: Duration) -> String {
    format!("{:?}", d)
}

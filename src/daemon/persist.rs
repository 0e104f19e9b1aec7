//! What the API reads (published servers) and the state file.

use super::*;

impl Daemon {
    pub(super) fn publish(&self, raw: RawConfig) {
        let servers = self
            .servers
            .iter()
            .map(|(n, r)| (n.clone(), Arc::clone(&r.runtime)))
            .collect();
        self.shared.publish(servers, raw, self.failed.clone());
    }

    /// Write the state file if its content changed.
    pub(super) fn persist(&mut self) {
        let Some(path) = &self.config.api.state_file else {
            return;
        };
        let runtimes: Vec<_> = self
            .servers
            .values()
            .map(|r| Arc::clone(&r.runtime))
            .collect();
        let mut now = control::snapshot(&self.overlay, &runtimes);
        // Saved backends not discovered again yet stay in the file.
        if let Some(pending) = &self.restore {
            now.backends.extend(pending.backends.iter().cloned());
        }
        if now.same(&self.written) {
            return;
        }
        match saved::write(path, &now) {
            Ok(()) => self.written = now,
            Err(e) => warn!("state", "cannot write {}: {e}", path.display()),
        }
    }
}

/// The API and metrics listeners, if enabled.
pub(super) fn start_http(cfg: &Config, shared: &Arc<Shared>, tx: api::Commands) -> io::Result<()> {
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
pub(super) fn read_state(cfg: &Config) -> Option<Saved> {
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
pub(super) fn with_overlay(loaded: &Loaded, saved: Option<&Saved>) -> (Loaded, Overlay) {
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

    /// From the published effective config: decoding the overlay's JSON
    /// into a `RawServer` here would cost the binary about 110 KB of
    /// deserializer code for `serde_json::Value`.
    fn server_raw(&self, name: &str) -> Option<crate::config::raw::RawServer> {
        self.shared.server_raw(name)
    }

    fn current(&self) -> Loaded {
        let raw = match self.shared.raw.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Loaded {
            config: self.config.clone(),
            warnings: Vec::new(),
            raw,
        }
    }
}

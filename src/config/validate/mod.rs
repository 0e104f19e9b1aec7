//! Raw structs -> runtime [`Config`]. Every problem is recorded in a [`Ctx`]
//! with its key path and checking goes on, so one run reports them all.

pub mod binds;
mod discovery;
mod discovery_kinds;
pub mod globals;
mod health_kinds;
mod healthcheck;
mod healthd;
mod server;
pub mod tls;
pub mod values;

use std::collections::BTreeMap;

use super::raw::RawConfig;
use super::{Config, ConfigError};

/// Errors and warnings found so far.
#[derive(Debug, Default)]
pub struct Ctx {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl Ctx {
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &str, message: impl AsRef<str>) {
        let message = message.as_ref();
        self.warnings.push(if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        });
    }
}

/// `base.key` (or `key` at the top level).
pub fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Validate everything. `None` when any error was recorded.
pub fn build(raw: &RawConfig, ctx: &mut Ctx) -> Option<Config> {
    let logging = globals::logging(ctx, raw.logging.as_ref());
    let api = globals::api(ctx, raw.api.as_ref());
    let metrics = globals::metrics(ctx, raw.metrics.as_ref());
    globals::profiler(ctx, raw.profiler.as_ref());
    globals::acme(ctx, raw.acme.as_ref());
    let defaults = globals::defaults(ctx, raw.defaults.as_ref());
    let mut servers = BTreeMap::new();
    for (name, server) in raw.servers.iter().flatten() {
        if let Some(s) = server::server(ctx, name, server, &defaults) {
            servers.insert(name.clone(), s);
        }
    }
    binds::check(ctx, &api, &metrics, &servers);
    if raw.servers.as_ref().is_none_or(|s| s.is_empty()) {
        ctx.warn("servers", "no servers are defined");
    }
    let config = Config {
        logging,
        api,
        metrics,
        max_exec_checks: defaults.max_exec_checks,
        servers,
        healthd: healthd::healthd(ctx, raw.healthd.as_ref()),
    };
    ctx.errors.is_empty().then_some(config)
}

//! The management API (`[api]`), `/metrics` (`[metrics]`), the status page
//! and the daemon's own `/health`, on tiny_http.
//!
//! tiny_http is blocking, so it runs on its own threads, away from the tokio
//! runtime that carries traffic. Reads look at [`Shared`] directly (the live
//! `ServerRuntime`s and the effective raw config the daemon publishes after
//! every change). Changes are sent to the daemon as a [`Command`] and wait
//! for its [`Reply`]: the daemon validates them with the same pipeline as a
//! config file and applies them with the same diff as SIGHUP, one at a time.

pub mod auth;
pub mod control;
pub mod dump;
pub mod front;
#[cfg(test)]
mod fuzz_tests;
mod guard;
mod handlers;
mod http;
pub mod overlay;
pub mod status;
#[cfg(feature = "tls")]
pub mod tls;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::config::raw::RawConfig;
use crate::state::ServerRuntime;

pub use http::{spawn_api, spawn_metrics};

/// What the daemon publishes for the API threads to read.
#[derive(Debug)]
pub struct Shared {
    pub started: SystemTime,
    /// The config file, for `GET /`.
    pub config_path: String,
    /// Running servers by name.
    pub servers: RwLock<BTreeMap<String, Arc<ServerRuntime>>>,
    /// The effective config as written (file + API changes), for `/dump` and `/servers`.
    pub raw: RwLock<RawConfig>,
    /// Configured servers that are not listening, with the reason.
    pub failed: RwLock<BTreeMap<String, String>>,
}

impl Shared {
    pub fn new(config_path: String, raw: RawConfig) -> Self {
        Self {
            started: SystemTime::now(),
            config_path,
            servers: RwLock::new(BTreeMap::new()),
            raw: RwLock::new(raw),
            failed: RwLock::new(BTreeMap::new()),
        }
    }

    /// The running servers, in name order.
    pub fn servers(&self) -> Vec<Arc<ServerRuntime>> {
        read(&self.servers).values().cloned().collect()
    }

    pub fn server(&self, name: &str) -> Option<Arc<ServerRuntime>> {
        read(&self.servers).get(name).cloned()
    }

    pub fn raw(&self) -> RawConfig {
        read(&self.raw).clone()
    }

    /// The section `name` runs with (the file's or the API's).
    pub fn server_raw(&self, name: &str) -> Option<crate::config::raw::RawServer> {
        read(&self.raw).servers.as_ref()?.get(name).cloned()
    }

    pub fn failed(&self) -> BTreeMap<String, String> {
        read(&self.failed).clone()
    }

    /// Called by the daemon after every change.
    pub fn publish(
        &self,
        servers: BTreeMap<String, Arc<ServerRuntime>>,
        raw: RawConfig,
        failed: BTreeMap<String, String>,
    ) {
        *write(&self.servers) = servers;
        *write(&self.raw) = raw;
        *write(&self.failed) = failed;
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A change the daemon must make.
#[derive(Debug)]
pub enum Op {
    /// `POST /servers/NAME`: the body is gobetween's server object.
    Create { name: String, body: Value },
    /// `PUT /servers/NAME`: replace in place (same diff as SIGHUP).
    Replace { name: String, body: Value },
    /// `DELETE /servers/NAME`.
    Delete { name: String },
    /// `POST /servers/NAME/backends/KEY/{drain,disable,enable}`.
    Admin {
        server: String,
        backend: String,
        admin: u8,
        /// `disable?close=true`: also close its open connections.
        close: bool,
    },
}

/// An HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": message.into() }),
        }
    }
}

/// An [`Op`] and where to send its [`Reply`].
#[derive(Debug)]
pub struct Command {
    pub op: Op,
    pub reply: oneshot::Sender<Reply>,
}

pub type Commands = mpsc::Sender<Command>;

/// Send `op` to the daemon and wait for its reply (API threads only).
fn submit(tx: &Commands, op: Op) -> Reply {
    let (reply, rx) = oneshot::channel();
    if tx.blocking_send(Command { op, reply }).is_err() {
        return Reply::error(503, "the daemon is shutting down");
    }
    rx.blocking_recv()
        .unwrap_or_else(|_| Reply::error(500, "the daemon dropped the request"))
}

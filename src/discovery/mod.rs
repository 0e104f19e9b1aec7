//! Backend discovery: where the list of backends of a server comes from.
//!
//! `static` lists come straight from the config. Every other kind runs as
//! one task per server ([`runner::Supervisor`]): it fetches with the kind's
//! [`Fetcher`] (I/O in `exec.rs`, `srv.rs`, ...), decides with the pure
//! [`policy`] what to hand over (failpolicy, retry wait, fetch-once), and
//! sends each new list to the daemon, which swaps in a new plan (backends
//! that stay keep their state; removed ones with open connections stay
//! visible but unelectable until idle, see [`crate::state::Plan::prune`]).

pub mod exec;
pub mod policy;
pub mod runner;
pub mod srv;
pub mod static_list;

use std::collections::BTreeMap;

use crate::config::{Discovery, DiscoveryKind};

/// One backend as a discovery source describes it (gobetween's fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// Host name or IP literal as written (`[::1]` keeps its brackets).
    pub host: String,
    pub port: u16,
    /// Default 1.
    pub weight: u32,
    /// Default 1; lower is preferred.
    pub priority: u32,
    /// 0 = unlimited.
    pub max_connections: u32,
    /// Empty when unset.
    pub sni: String,
}

impl BackendSpec {
    /// The identity key, `"host:port"`, as gobetween prints it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What one successful fetch found, and what it skipped (one message each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub specs: Vec<BackendSpec>,
    pub warnings: Vec<String>,
}

/// A configured dynamic source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetcher {
    Exec(exec::Exec),
    Srv(srv::Srv),
}

impl Fetcher {
    /// The fetcher of a dynamic kind; `Ok(None)` for `static`; an error for
    /// a kind this build cannot run.
    pub fn of(d: &Discovery) -> Result<Option<Fetcher>, String> {
        let (kind, params) = match &d.kind {
            DiscoveryKind::Static { .. } => return Ok(None),
            DiscoveryKind::Other { kind, params } => (kind.as_str(), params),
        };
        let p = |key: &str| param(params, key);
        Ok(Some(match kind {
            "exec" => Fetcher::Exec(exec::Exec {
                argv: p("exec_command")?.lines().map(String::from).collect(),
            }),
            "srv" => Fetcher::Srv(srv::Srv {
                server: p("srv_lookup_server")?.to_string(),
                pattern: p("srv_lookup_pattern")?.to_string(),
                tcp: p("srv_dns_protocol")? == "tcp",
            }),
            other => return Err(format!("discovery kind \"{other}\"")),
        }))
    }

    pub async fn fetch(&self) -> Result<Listing, String> {
        match self {
            Fetcher::Exec(e) => e.fetch().await,
            Fetcher::Srv(s) => s.fetch().await,
        }
    }
}

fn param<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, String> {
    params
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("{key} is missing"))
}

/// The backends a server starts with: its static list, or none until the
/// first fetch of a dynamic kind.
pub fn initial_specs(d: &Discovery) -> &[BackendSpec] {
    match &d.kind {
        DiscoveryKind::Static { backends } => backends,
        DiscoveryKind::Other { .. } => &[],
    }
}

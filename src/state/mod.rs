//! Live servers and backends, and reload diffs.
//!
//! A server's routing data is one immutable [`Plan`] snapshot (config,
//! balancer, backends) swapped whole on reload; a connection clones the
//! `Arc<Plan>` it started with. What must outlive snapshots — counters,
//! health and admin state of a backend — lives in an `Arc<BackendState>`
//! that the next plan reuses for the same `host:port`.

pub mod diff;
#[cfg(test)]
mod fuzz_tests;
mod plan;
pub mod saved;
mod tracker;

pub use plan::{
    ADMIN_DISABLED, ADMIN_DRAIN, ADMIN_ENABLED, Backend, BackendState, Elected, Plan,
    ServerRuntime, Target,
};
pub use tracker::{ConnGuard, Tracker};

#[cfg(test)]
pub(crate) mod fixtures;

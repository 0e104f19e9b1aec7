//! betwixt: an L4 load balancer and health-check daemon for Linux edge appliances.
//!
//! Layers, from the outside in (see `docs/ARCHITECTURE.md`):
//! - [`cli`] parses the command line and drives a [`daemon`] (or
//!   [`healthd`], the gruntwork health-checker drop-in).
//! - [`api`] serves the management API, `/status`, `/health` and
//!   `/metrics` on its own threads; changes go to the daemon as commands.
//! - [`config`] turns TOML/JSON text into a validated [`config::Config`]
//!   (raw serde structs -> validation reporting every error -> runtime types).
//! - [`state`] holds the live servers and backends, and computes reload diffs.
//! - [`discovery`] produces backend lists; [`health`] decides which are live;
//!   both use [`http`], a small HTTP/1.1 client;
//!   [`balance`] elects one per connection.
//! - [`proxy`] owns listeners and the per-connection data path (splice/copy,
//!   parking, the optional sockmap fast path); `tls` builds its rustls
//!   configurations (feature "tls").
//! - [`resolve`] turns backend host names into addresses through one cache.
//! - [`metrics`] keeps the counters and rates every other layer reports into.
//! - [`log`] writes gobetween's text lines or JSON lines.
//! - [`alloc`] is the binary's global allocator (cheap over-aligned blocks).

pub mod alloc;
pub mod api;
pub mod balance;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod discovery;
#[cfg(test)]
pub mod fuzz;
pub mod health;
pub mod healthd;
pub mod http;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod resolve;
pub mod state;
#[cfg(feature = "tls")]
pub mod tls;

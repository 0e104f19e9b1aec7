//! The I/O side of health checking: one task per checked backend, and the
//! [`Supervisor`] that keeps those tasks in line with each server's plan.
//!
//! A task runs its checks one after the other (never two of one target at
//! once: the next is scheduled only when the last one ended, so a slow check
//! delays the next), feeds each result to its [`Machine`], and on a
//! transition flips [`BackendState::live`] (what the balancers look at),
//! logs it with its cause, and with `on_down = "close"` closes the
//! backend's open connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use super::machine::{Machine, Rules};
use super::report::Report;
use super::{Context, Outcome, Target, Verdict};
use crate::balance::random_u64;
use crate::config::{Check, Healthcheck, OnDown};
use crate::state::{BackendState, Plan};
use crate::{info, warn};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One checked backend: what it is checked with.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    hc: Healthcheck,
    target: Target,
}

#[derive(Debug)]
struct Job {
    spec: Spec,
    task: Option<JoinHandle<()>>,
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Starts, keeps and stops the check tasks of every server.
#[derive(Debug, Default)]
pub struct Supervisor {
    ctx: Context,
    /// server name -> backend key -> job.
    jobs: HashMap<String, HashMap<String, Job>>,
}

impl Supervisor {
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx,
            jobs: HashMap::new(),
        }
    }

    /// Make the tasks of `server` match `plan`: backends whose check and
    /// target did not change keep their task (and so their state); others
    /// get a new one; tasks of backends no longer in the plan stop.
    pub fn sync(&mut self, server: &str, plan: &Plan) {
        let hc = &plan.config.healthcheck;
        let mut old = self.jobs.remove(server).unwrap_or_default();
        let mut jobs = HashMap::with_capacity(plan.backends.len());
        for b in &plan.backends {
            let spec = Spec {
                hc: hc.clone(),
                target: Target::new(&b.spec.host, hc.port.unwrap_or(b.spec.port)),
            };
            let job = match old.remove(&b.key) {
                Some(job) if job.spec == spec => job,
                _ => self.start(server, &b.key, spec, &b.state),
            };
            jobs.insert(b.key.clone(), job);
        }
        self.jobs.insert(server.to_string(), jobs);
    }

    /// Stop every task of `server`.
    pub fn stop(&mut self, server: &str) {
        self.jobs.remove(server);
    }

    fn start(&self, server: &str, key: &str, spec: Spec, state: &Arc<BackendState>) -> Job {
        let live = state.live.load(Relaxed);
        *state.report() = Report::new(&spec.hc.kind, live, unix_ms());
        let task = match (Rules::of(&spec.hc), &spec.hc.check) {
            (Some(rules), check) if *check != Check::None => {
                let watch = Watch {
                    server: server.to_string(),
                    key: key.to_string(),
                    spec: spec.clone(),
                    state: Arc::clone(state),
                    ctx: self.ctx.clone(),
                };
                Some(tokio::spawn(watch.run(Machine::new(rules, live))))
            }
            _ => {
                // Kind `none`: always healthy.
                state.live.store(true, Relaxed);
                state.score.store(100, Relaxed);
                state.report().healthy = true;
                None
            }
        };
        Job { spec, task }
    }
}

/// The loop of one backend.
struct Watch {
    server: String,
    key: String,
    spec: Spec,
    state: Arc<BackendState>,
    ctx: Context,
}

impl Watch {
    async fn run(self, mut machine: Machine) {
        tokio::time::sleep(machine.first_delay(random_u64())).await;
        loop {
            let started = Instant::now();
            let hc = &self.spec.hc;
            let timeout = super::check_timeout(hc);
            let outcome = super::run(&hc.check, &self.spec.target, timeout, &self.ctx).await;
            let took = started.elapsed();
            let transition = machine.record(outcome.verdict);
            self.record(&machine, &outcome, took);
            match transition {
                Some(up) => self.transition(up, &outcome),
                None if outcome.verdict == Verdict::Unknown => warn!(
                    &self.server,
                    "health {}: {} ({}); state unchanged", self.key, outcome.detail, outcome.cause
                ),
                None => {}
            }
            tokio::time::sleep(machine.next_delay(random_u64())).await;
        }
    }

    fn record(&self, machine: &Machine, outcome: &Outcome, took: Duration) {
        let score = machine.score();
        self.state.score.store(score, Relaxed);
        self.state.live.store(machine.healthy(), Relaxed);
        self.state
            .report()
            .push(outcome, took, unix_ms(), machine.healthy(), score);
    }

    fn transition(&self, up: bool, outcome: &Outcome) {
        if up {
            info!(
                &self.server,
                "backend {} is up ({}: {})", self.key, outcome.cause, outcome.detail
            );
            return;
        }
        warn!(
            &self.server,
            "backend {} is down ({}: {})", self.key, outcome.cause, outcome.detail
        );
        if self.spec.hc.on_down == OnDown::Close {
            self.state.close_connections();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::static_list::parse_line;
    use crate::state::fixtures::test_server;

    fn plan(lines: &[&str], hc: Healthcheck, previous: Option<&Plan>) -> Plan {
        let mut cfg = test_server("127.0.0.1:1");
        cfg.healthcheck = hc;
        let specs: Vec<_> = lines.iter().filter_map(|l| parse_line(l).ok()).collect();
        Plan::new(Arc::new(cfg), &specs, previous)
    }

    fn ping(interval_ms: u64) -> Healthcheck {
        let mut hc = Healthcheck::none();
        hc.kind = "ping".into();
        hc.check = Check::Ping;
        hc.interval = Some(Duration::from_millis(interval_ms));
        hc
    }

    fn task_ids(s: &Supervisor) -> Vec<(String, tokio::task::Id)> {
        let mut ids: Vec<_> = s.jobs["web"]
            .iter()
            .filter_map(|(k, j)| j.task.as_ref().map(|t| (k.clone(), t.id())))
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn sync_keeps_unchanged_tasks_and_replaces_changed_ones() {
        let mut sup = Supervisor::default();
        let p1 = plan(&["127.0.0.1:9", "127.0.0.1:10"], ping(60_000), None);
        sup.sync("web", &p1);
        let first = task_ids(&sup);
        assert_eq!(first.len(), 2);

        // Same check, one backend more: old tasks kept.
        let p2 = plan(
            &["127.0.0.1:9", "127.0.0.1:10", "127.0.0.1:11"],
            ping(60_000),
            Some(&p1),
        );
        sup.sync("web", &p2);
        let second = task_ids(&sup);
        assert_eq!(second.len(), 3);
        assert!(first.iter().all(|t| second.contains(t)));

        // Another interval: every task restarts.
        let p3 = plan(&["127.0.0.1:9"], ping(30_000), Some(&p2));
        sup.sync("web", &p3);
        let third = task_ids(&sup);
        assert_eq!(third.len(), 1);
        assert!(!first.contains(&third[0]));

        sup.stop("web");
        assert!(!sup.jobs.contains_key("web"));
    }

    #[tokio::test]
    async fn kind_none_makes_a_backend_live_without_a_task() {
        let mut hc = ping(60_000);
        hc.initial_healthy = false;
        let p1 = plan(&["127.0.0.1:9"], hc, None);
        assert!(!p1.backends[0].state.live.load(Relaxed));
        let mut sup = Supervisor::default();
        let p2 = plan(&["127.0.0.1:9"], Healthcheck::none(), Some(&p1));
        sup.sync("web", &p2);
        assert!(p2.backends[0].state.live.load(Relaxed));
        assert!(sup.jobs["web"].values().all(|j| j.task.is_none()));
    }

    #[tokio::test]
    async fn a_refused_target_goes_down_after_fails_results() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let mut hc = ping(50);
        hc.fails = 2;
        let line = format!("127.0.0.1:{port}");
        let p = plan(&[&line], hc, None);
        let state = Arc::clone(&p.backends[0].state);
        let mut sup = Supervisor::default();
        sup.sync("web", &p);
        let mut waited = 0;
        while state.live.load(Relaxed) && waited < 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += 1;
        }
        assert!(!state.live.load(Relaxed));
        let report = state.report().clone();
        assert_eq!(report.kind, "ping");
        assert!(report.checks >= 2, "{report:?}");
        assert_eq!(report.history[0].cause, super::super::Cause::Refused);
    }
}

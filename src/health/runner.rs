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
            let outcome = super::run(&hc.check, &self.spec.target, hc.timeout, &self.ctx).await;
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

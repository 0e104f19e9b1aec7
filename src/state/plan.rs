//! A server's routing snapshot and the backends in it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use super::Tracker;
use crate::balance::{Balancer, Candidate, random_u64};
use crate::config::{Server, UnexpectedHostname};
use crate::discovery::BackendSpec;
use crate::health::report::Report;
use crate::metrics::Counters;
use crate::proxy::sni::HostMatcher;

/// Elections gather up to this many candidates on the stack.
const STACK_CANDIDATES: usize = 16;

/// Admin states of a backend (set through the API in a later release).
pub const ADMIN_ENABLED: u8 = 0;
pub const ADMIN_DRAIN: u8 = 1;
pub const ADMIN_DISABLED: u8 = 2;

/// What outlives plan swaps: counters, health and admin state of one `host:port`.
#[derive(Debug)]
pub struct BackendState {
    pub counters: Counters,
    /// Health as the checker last decided it.
    pub live: AtomicBool,
    /// Health score in percent (100 when score windows are off and live).
    pub score: AtomicU32,
    /// One of the `ADMIN_*` constants.
    pub admin: AtomicU8,
    /// The checker's record, for the API and metrics.
    pub health: Mutex<Report>,
    /// Bumped to close every open connection to this backend.
    closer: watch::Sender<u64>,
    /// "connect to ... failed" warnings: at most one per period (the
    /// others are debug lines), as every client of a dead backend without
    /// a health check would write one.
    pub connect_log: crate::log::Throttle,
}

impl BackendState {
    pub fn new(live: bool) -> Self {
        Self {
            counters: Counters::default(),
            live: AtomicBool::new(live),
            score: AtomicU32::new(if live { 100 } else { 0 }),
            admin: AtomicU8::new(ADMIN_ENABLED),
            health: Mutex::new(Report::new("none", live, crate::health::runner::unix_ms())),
            closer: watch::channel(0).0,
            connect_log: crate::log::Throttle::default(),
        }
    }

    /// Resolves when [`Self::close_connections`] is called after this.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closer();
        async move {
            let _ = rx.changed().await;
        }
    }

    /// The close signal: `changed()` / `has_changed()` report a
    /// [`Self::close_connections`] made after this call.
    pub fn closer(&self) -> watch::Receiver<u64> {
        self.closer.subscribe()
    }

    /// Close every open connection to this backend (`on_down = "close"`,
    /// admin disable).
    pub fn close_connections(&self) {
        self.closer.send_modify(|g| *g = g.wrapping_add(1));
        // Parked connections see the signal at the lot's next sweep.
        crate::proxy::park::sweep_now();
    }

    /// The checker's record, even if a panicking thread poisoned the lock.
    pub fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Healthy and taking new connections.
    pub fn electable(&self) -> bool {
        self.live.load(Ordering::Relaxed) && self.admin.load(Ordering::Relaxed) == ADMIN_ENABLED
    }
}

/// Where to connect: a parsed address, or a name resolved through the
/// process-wide cache (`crate::resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

impl Target {
    fn of(spec: &BackendSpec) -> Self {
        let host = spec.host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => Self::Addr(SocketAddr::new(ip, spec.port)),
            Err(_) => Self::Name(host.to_string(), spec.port),
        }
    }
}

#[derive(Debug)]
pub struct Backend {
    pub spec: BackendSpec,
    /// `"host:port"`.
    pub key: String,
    pub target: Target,
    pub state: Arc<BackendState>,
    /// Gone from the discovered list but still carrying connections: shown,
    /// never elected, dropped by [`Plan::prune`] once idle.
    pub removed: bool,
    /// Matches this backend's `sni=` value (servers with `[sni]` only).
    pub sni: Option<HostMatcher>,
}

impl Backend {
    fn active(&self) -> u64 {
        self.state.counters.active.load(Ordering::Relaxed)
    }
}

/// An immutable routing snapshot of one server.
#[derive(Debug)]
pub struct Plan {
    pub config: Arc<Server>,
    pub balancer: Arc<Balancer>,
    pub backends: Vec<Backend>,
    /// Bounds "no backend available" lines (`proxy::tcp::no_backend`); a new
    /// plan (reload, discovered list) starts afresh.
    pub no_backend_log: crate::log::Throttle,
    /// Bounds "max_connections reached" (tcp) and "udp sessions open" lines
    /// the same way.
    pub limit_log: crate::log::Throttle,
}

/// A backend chosen for one connection, holding its reserved slot.
#[derive(Debug)]
pub struct Elected {
    pub index: usize,
    pub state: Arc<BackendState>,
}

impl Drop for Elected {
    fn drop(&mut self) {
        self.state.counters.release();
    }
}

impl Backend {
    /// Its `sni=` matches `host` (servers with `[sni]`).
    fn serves(&self, host: &str) -> bool {
        self.sni.as_ref().is_some_and(|m| m.matches(host))
    }

    /// It has no `sni=`: the default for unexpected names.
    fn unnamed(&self) -> bool {
        self.spec.sni.is_empty()
    }
}

impl Plan {
    /// Build a plan, keeping the state of backends that `previous` already had
    /// and its balancer when the strategy did not change.
    pub fn new(config: Arc<Server>, specs: &[BackendSpec], previous: Option<&Plan>) -> Self {
        Self::build(config, specs, previous).0
    }

    /// [`Self::new`], and one warning per backend left out: its `sni=`
    /// regexp does not compile (a discovered list; a static one is refused
    /// at load time). Each `sni=` value is compiled here, once: a plan
    /// rebuilt with the same matching strategy (every discovery fetch) keeps
    /// the matchers of unchanged values.
    pub fn build(
        config: Arc<Server>,
        specs: &[BackendSpec],
        previous: Option<&Plan>,
    ) -> (Self, Vec<String>) {
        let known: HashMap<&str, &Backend> = previous
            .map(|p| p.backends.iter().map(|b| (b.key.as_str(), b)).collect())
            .unwrap_or_default();
        let strategy = |c: &Server| c.sni.as_ref().map(|s| s.hostname_matching_strategy);
        let same_matching = previous.is_some_and(|p| strategy(&p.config) == strategy(&config));
        let initial_live = config.healthcheck.initial_healthy;
        let mut skipped = Vec::new();
        let mut backends: Vec<Backend> = specs
            .iter()
            .filter_map(|spec| {
                let key = spec.key();
                let before = known.get(key.as_str());
                let kept = before
                    .filter(|b| same_matching && b.spec.sni == spec.sni)
                    .and_then(|b| b.sni.clone());
                let sni = match (&config.sni, kept) {
                    (None, _) => None,
                    (Some(_), Some(matcher)) => Some(matcher),
                    (Some(c), None) => {
                        match HostMatcher::compile(c.hostname_matching_strategy, &spec.sni) {
                            Ok(matcher) => Some(matcher),
                            Err(e) => {
                                skipped.push(format!("backend {key} skipped: {e}"));
                                return None;
                            }
                        }
                    }
                };
                let state = before
                    .map(|b| Arc::clone(&b.state))
                    .unwrap_or_else(|| Arc::new(BackendState::new(initial_live)));
                Some(Backend {
                    sni,
                    target: Target::of(spec),
                    spec: spec.clone(),
                    key,
                    state,
                    removed: false,
                })
            })
            .collect();
        if let Some(p) = previous {
            let listed: Vec<BackendSpec> = backends.iter().map(|b| b.spec.clone()).collect();
            backends.extend(still_busy(p, &listed));
        }
        // Key order lets roundrobin and iphash elect in one pass.
        backends.sort_by(|a, b| a.key.cmp(&b.key));
        let balancer = match previous {
            Some(p) if p.balancer.kind() == config.balance => Arc::clone(&p.balancer),
            _ => Arc::new(Balancer::new(config.balance)),
        };
        let plan = Self {
            config,
            balancer,
            backends,
            no_backend_log: crate::log::Throttle::default(),
            limit_log: crate::log::Throttle::default(),
        };
        (plan, skipped)
    }

    /// The discovered backends (without the removed ones still draining).
    pub fn specs(&self) -> Vec<BackendSpec> {
        self.backends
            .iter()
            .filter(|b| !b.removed)
            .map(|b| b.spec.clone())
            .collect()
    }

    /// A plan without the removed backends that became idle, or `None` when
    /// there are none.
    pub fn prune(&self) -> Option<Plan> {
        self.backends
            .iter()
            .any(|b| b.removed && b.active() == 0)
            .then(|| Plan::new(Arc::clone(&self.config), &self.specs(), Some(self)))
    }

    /// Elect a backend for `client`, skipping `exclude` (backends already
    /// tried), and reserve a connection slot on it.
    pub fn elect(&self, client: IpAddr, exclude: &[usize]) -> Option<Elected> {
        self.elect_where(client, exclude, |_| true)
    }

    /// [`Self::elect`] for a server with `[sni]`: backends whose `sni=`
    /// matches `host` (the ClientHello's name, lower case); when none of
    /// them can be elected, `unexpected_hostname_strategy` decides:
    /// `default` = backends without `sni=`, `any` = every backend, `reject` =
    /// none. Without `[sni]` this is [`Self::elect`].
    pub fn elect_sni(
        &self,
        client: IpAddr,
        exclude: &[usize],
        host: Option<&str>,
    ) -> Option<Elected> {
        let Some(sni) = &self.config.sni else {
            return self.elect(client, exclude);
        };
        if let Some(host) = host {
            let found = self.elect_where(client, exclude, |b| b.serves(host));
            if found.is_some() {
                return found;
            }
        }
        match sni.unexpected_hostname_strategy {
            UnexpectedHostname::Reject => None,
            UnexpectedHostname::Any => self.elect(client, exclude),
            UnexpectedHostname::Default => self.elect_where(client, exclude, Backend::unnamed),
        }
    }

    /// Whether some backend could serve `host` under the SNI rules, health
    /// and load aside: `false` means [`Self::elect_sni`] fails for it in any
    /// state, so a TLS server can refuse before the handshake.
    pub fn sni_may_serve(&self, host: Option<&str>) -> bool {
        let Some(sni) = &self.config.sni else {
            return true;
        };
        let named = |b: &Backend| host.is_some_and(|h| b.serves(h));
        match sni.unexpected_hostname_strategy {
            UnexpectedHostname::Reject => self.backends.iter().any(named),
            UnexpectedHostname::Any => true,
            UnexpectedHostname::Default => self.backends.iter().any(|b| named(b) || b.unnamed()),
        }
    }

    fn elect_where(
        &self,
        client: IpAddr,
        exclude: &[usize],
        wanted: impl Fn(&Backend) -> bool,
    ) -> Option<Elected> {
        // A reservation can lose a race with another thread; each loss removes
        // that backend, so this ends after at most `backends.len()` rounds.
        // `lost` only allocates when a race is lost.
        let mut lost: Vec<usize> = Vec::new();
        loop {
            let index = self.choose(client, |i| {
                exclude.contains(&i) || lost.contains(&i) || !wanted(&self.backends[i])
            })?;
            let backend = &self.backends[index];
            if backend
                .state
                .counters
                .try_reserve(backend.spec.max_connections)
            {
                return Some(Elected {
                    index,
                    state: Arc::clone(&backend.state),
                });
            }
            lost.push(index);
        }
    }

    /// Gather the electable candidates (on the stack for up to
    /// [`STACK_CANDIDATES`] backends: no allocation per connection) and let
    /// the balancer pick one.
    fn choose(&self, client: IpAddr, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let pick = |ids: &[usize], cands: &[Candidate]| {
            let pick = self.balancer.elect(cands, client, random_u64())?;
            ids.get(pick).copied()
        };
        if self.backends.len() <= STACK_CANDIDATES {
            let mut ids = heapless::Vec::<usize, STACK_CANDIDATES>::new();
            let mut cands = heapless::Vec::<Candidate, STACK_CANDIDATES>::new();
            for (i, c) in self.candidates(skip) {
                // Cannot fail: at most `backends.len()` candidates.
                let _ = (ids.push(i), cands.push(c));
            }
            return pick(&ids, &cands);
        }
        let (ids, cands): (Vec<usize>, Vec<Candidate>) = self.candidates(skip).unzip();
        pick(&ids, &cands)
    }

    fn candidates(
        &self,
        skip: impl Fn(usize) -> bool,
    ) -> impl Iterator<Item = (usize, Candidate<'_>)> {
        self.backends.iter().enumerate().filter_map(move |(i, b)| {
            if skip(i) || b.removed || !b.state.electable() {
                return None;
            }
            let c = Candidate {
                key: &b.key,
                priority: b.spec.priority,
                weight: b.spec.weight,
                active: b.state.counters.active.load(Ordering::Relaxed),
                max_connections: b.spec.max_connections,
                bandwidth: b.state.counters.bandwidth(),
                score: b.state.score.load(Ordering::Relaxed),
            };
            Some((i, c))
        })
    }
}

/// Backends of `previous` absent from `specs` that still have connections:
/// kept visible, marked removed.
fn still_busy<'a>(
    previous: &'a Plan,
    specs: &'a [BackendSpec],
) -> impl Iterator<Item = Backend> + 'a {
    previous
        .backends
        .iter()
        .filter(move |b| b.active() > 0 && !specs.iter().any(|s| s.key() == b.key))
        .map(|b| Backend {
            spec: b.spec.clone(),
            key: b.key.clone(),
            target: b.target.clone(),
            state: Arc::clone(&b.state),
            sni: b.sni.clone(),
            removed: true,
        })
}

/// One running server: its current plan, counters and open connections.
#[derive(Debug)]
pub struct ServerRuntime {
    pub name: String,
    plan: RwLock<Arc<Plan>>,
    pub counters: Counters,
    pub tracker: Arc<Tracker>,
}

impl ServerRuntime {
    pub fn new(name: String, plan: Plan) -> Self {
        Self {
            name,
            plan: RwLock::new(Arc::new(plan)),
            counters: Counters::default(),
            tracker: Arc::new(Tracker::default()),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        match self.plan.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Swap in a new plan; open connections keep the one they started with.
    pub fn set_plan(&self, plan: Plan) {
        let plan = Arc::new(plan);
        match self.plan.write() {
            Ok(mut p) => *p = plan,
            Err(poisoned) => *poisoned.into_inner() = plan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostnameMatching, Sni};
    use crate::discovery::static_list::parse_line;
    use crate::state::fixtures::test_server;

    fn specs(lines: &[&str]) -> Vec<BackendSpec> {
        lines.iter().map(|l| parse_line(l).unwrap()).collect()
    }

    fn keys(plan: &Plan) -> Vec<(String, bool)> {
        plan.backends
            .iter()
            .map(|b| (b.key.clone(), b.removed))
            .collect()
    }

    #[test]
    fn removed_backend_with_connections_stays_unelectable_until_idle() {
        let cfg = Arc::new(test_server("127.0.0.1:1"));
        let first = Plan::new(Arc::clone(&cfg), &specs(&["a:1", "b:1"]), None);
        let busy = first.elect("127.0.0.1".parse().unwrap(), &[]).unwrap();
        let busy_key = first.backends[busy.index].key.clone();
        let other = if busy_key == "a:1" { "b:1" } else { "a:1" };
        // The busy backend disappears from the list, the other one stays.
        let second = Plan::new(Arc::clone(&cfg), &specs(&[other]), Some(&first));
        let mut want = vec![(other.to_string(), false), (busy_key.clone(), true)];
        want.sort();
        assert_eq!(keys(&second), want);
        assert_eq!(second.specs(), specs(&[other]));
        for _ in 0..20 {
            let e = second.elect("127.0.0.1".parse().unwrap(), &[]).unwrap();
            assert_eq!(second.backends[e.index].key, other);
        }
        assert!(second.prune().is_none(), "still busy: nothing to prune");
        // Its state (counters) is the same object.
        let kept = second.backends.iter().find(|b| b.removed).unwrap();
        assert!(Arc::ptr_eq(&kept.state, &busy.state));
        drop(busy);
        let third = second.prune().expect("idle now");
        assert_eq!(keys(&third), vec![(other.to_string(), false)]);
        assert!(third.prune().is_none());
    }

    #[test]
    fn elections_map_back_to_their_backend_on_the_stack_and_on_the_heap() {
        let cfg = Arc::new(test_server("127.0.0.1:1"));
        for n in [3, STACK_CANDIDATES, STACK_CANDIDATES + 5] {
            let lines: Vec<String> = (1..=n).map(|p| format!("127.0.0.1:{p}")).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let plan = Plan::new(Arc::clone(&cfg), &specs(&lines), None);
            for keep in 0..n {
                let exclude: Vec<usize> = (0..n).filter(|i| *i != keep).collect();
                let e = plan.elect("127.0.0.1".parse().unwrap(), &exclude);
                assert_eq!(e.map(|e| e.index), Some(keep), "{n} backends");
            }
        }
    }

    #[test]
    fn idle_removed_backend_goes_at_once_and_returning_one_keeps_state() {
        let cfg = Arc::new(test_server("127.0.0.1:1"));
        let first = Plan::new(Arc::clone(&cfg), &specs(&["a:1", "b:1"]), None);
        let b_state = Arc::clone(&first.backends[1].state);
        let second = Plan::new(Arc::clone(&cfg), &specs(&["b:1"]), Some(&first));
        assert_eq!(keys(&second), vec![("b:1".to_string(), false)]);
        assert!(Arc::ptr_eq(&second.backends[0].state, &b_state));
    }

    fn plan(unexpected: UnexpectedHostname, matching: HostnameMatching) -> Plan {
        let mut cfg = test_server("127.0.0.1:1");
        cfg.sni = Some(Sni {
            read_timeout: std::time::Duration::from_secs(1),
            hostname_matching_strategy: matching,
            unexpected_hostname_strategy: unexpected,
        });
        let lines = [
            "127.0.0.1:1 sni=a.example",
            "127.0.0.1:2 sni=B.example",
            "127.0.0.1:3",
        ];
        let specs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        Plan::new(Arc::new(cfg), &specs, None)
    }

    fn port(p: &Plan, host: Option<&str>) -> Option<u16> {
        let ip = IpAddr::from([127, 0, 0, 1]);
        p.elect_sni(ip, &[], host)
            .map(|e| p.backends[e.index].spec.port)
    }

    #[test]
    fn sni_elects_the_matching_backend() {
        let p = plan(UnexpectedHostname::Default, HostnameMatching::Exact);
        for _ in 0..20 {
            assert_eq!(port(&p, Some("a.example")), Some(1));
            assert_eq!(port(&p, Some("b.example")), Some(2));
        }
    }

    #[test]
    fn unexpected_hostnames_follow_the_strategy() {
        let p = plan(UnexpectedHostname::Default, HostnameMatching::Exact);
        assert_eq!(port(&p, Some("c.example")), Some(3));
        assert_eq!(port(&p, None), Some(3));
        let p = plan(UnexpectedHostname::Reject, HostnameMatching::Exact);
        assert_eq!(port(&p, Some("c.example")), None);
        let p = plan(UnexpectedHostname::Any, HostnameMatching::Exact);
        let seen: std::collections::BTreeSet<_> = (0..200)
            .filter_map(|_| port(&p, Some("c.example")))
            .collect();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn only_names_no_backend_can_serve_are_refused_early() {
        let p = plan(UnexpectedHostname::Reject, HostnameMatching::Exact);
        assert!(p.sni_may_serve(Some("a.example")));
        assert!(!p.sni_may_serve(Some("c.example")));
        assert!(!p.sni_may_serve(None));
        // A down match may come back: not refused before the handshake.
        p.backends[0].state.live.store(false, Ordering::Relaxed);
        assert!(p.sni_may_serve(Some("a.example")));
        let p = plan(UnexpectedHostname::Default, HostnameMatching::Exact);
        assert!(p.sni_may_serve(Some("c.example")) && p.sni_may_serve(None));
        assert!(plan(UnexpectedHostname::Any, HostnameMatching::Exact).sni_may_serve(None));
    }

    #[test]
    fn a_rebuilt_plan_matches_by_its_own_strategy() {
        let exact = plan(UnexpectedHostname::Reject, HostnameMatching::Exact);
        let mut cfg = (*exact.config).clone();
        if let Some(sni) = &mut cfg.sni {
            sni.hostname_matching_strategy = HostnameMatching::Regexp;
        }
        let specs = exact.specs();
        let re = Plan::new(Arc::new(cfg), &specs, Some(&exact));
        // As a regexp, `a.example` also matches `aXexample`.
        assert_eq!(port(&exact, Some("aXexample")), None);
        assert_eq!(port(&re, Some("aXexample")), Some(1));
        // Rebuilt with the same strategy (a discovery fetch): still so.
        let again = Plan::new(Arc::clone(&re.config), &specs, Some(&re));
        assert_eq!(port(&again, Some("aXexample")), Some(1));
        assert_eq!(port(&again, Some("b.example")), Some(2));
    }

    #[test]
    fn a_discovered_backend_with_a_broken_regexp_is_left_out_with_a_warning() {
        let mut cfg = test_server("127.0.0.1:1");
        cfg.sni = Some(Sni {
            read_timeout: std::time::Duration::from_secs(1),
            hostname_matching_strategy: HostnameMatching::Regexp,
            unexpected_hostname_strategy: UnexpectedHostname::Reject,
        });
        let lines = [
            "127.0.0.1:1 sni=a\\.test",
            "127.0.0.1:2 sni=[z-a]",
            "127.0.0.1:3",
        ];
        let specs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        let (p, skipped) = Plan::build(Arc::new(cfg), &specs, None);
        let keys: Vec<&str> = p.backends.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["127.0.0.1:1", "127.0.0.1:3"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(
            skipped[0]
                .starts_with("backend 127.0.0.1:2 skipped: sni=\"[z-a]\" is not a valid regexp"),
            "{skipped:?}"
        );
        assert_eq!(port(&p, Some("a.test")), Some(1));
        // Exact names are never refused.
        let mut exact = (*p.config).clone();
        if let Some(sni) = &mut exact.sni {
            sni.hostname_matching_strategy = HostnameMatching::Exact;
        }
        let (p, skipped) = Plan::build(Arc::new(exact), &specs, Some(&p));
        assert_eq!((p.backends.len(), skipped.len()), (3, 0));
    }

    #[test]
    fn a_down_match_is_unexpected() {
        let p = plan(UnexpectedHostname::Reject, HostnameMatching::Regexp);
        assert_eq!(port(&p, Some("a.example")), Some(1));
        p.backends[0].state.live.store(false, Ordering::Relaxed);
        assert_eq!(port(&p, Some("a.example")), None);
    }
}

//! `betwixt healthd`: a drop-in for gruntwork-io/health-checker. Any request
//! to the listener runs every configured check at once and answers 200 when
//! all pass, 504 when any fails, with one line per check in the body.
//! `--singleflight` makes concurrent requests share one evaluation.
//!
//! Checks: `--port N` = a TCP connect to 127.0.0.1:N (5 s); `--script "CMD
//! ARGS"` = CMD run with ARGS (split on whitespace, no shell) in its own
//! process group, exit 0 passes, killed as a group after `--script-timeout`
//! seconds. `--config FILE` (`-c`) adds the checks of the file's
//! `[healthd.checks.NAME]` sections (any health-check kind, see
//! docs/CONFIG.md) and takes `listener`/`singleflight` from `[healthd]`
//! unless the flags say otherwise. Parsing is pure ([`parse`]); [`run`]
//! does the I/O.
//!
//! Logs go to stderr at `--log-level` (default info): each check's first
//! verdict and every change of it at info, every evaluation at debug.
//! SIGTERM and SIGINT stop the listener and exit 0, also as PID 1 of a
//! container, where signals without a handler are ignored.
//!
//! Bounded against floods: at most [`MAX_REQUESTS`] requests in flight
//! (more get 503 at once) and [`MAX_PROCESSES`] check processes at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::{self, Check, HealthdCheck, Level, LogFormat, LogOutput, Logging};
use crate::health::process::{self, Invocation};
use crate::health::{self, Context, Outcome, Target, Verdict};
use crate::{debug, info};

/// Log component name.
const LOG: &str = "healthd";

const PORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of a `[healthd.checks.NAME]` check without `timeout` (there is no
/// interval to fall back on: checks run per request).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests answered at once; more get 503 at once (each holds a thread).
pub const MAX_REQUESTS: usize = 256;
/// Scripts and exec checks running at once, across requests; a run waits
/// for a slot within its timeout.
pub const MAX_PROCESSES: usize = 64;

/// What `betwixt healthd` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub listener: SocketAddr,
    pub ports: Vec<u16>,
    /// Each script as program then arguments.
    pub scripts: Vec<Vec<String>>,
    pub script_timeout: Duration,
    pub singleflight: bool,
    pub log_level: Level,
    /// `--config FILE`: read when the daemon starts ([`with_file`]).
    pub config: Option<PathBuf>,
    /// `--listener` was given (it wins over the file's).
    pub listener_set: bool,
    /// Checks from the config file.
    pub checks: Vec<HealthdCheck>,
}

/// Parse the arguments after `healthd`.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        listener: SocketAddr::from(([0, 0, 0, 0], 5000)),
        ports: Vec::new(),
        scripts: Vec::new(),
        script_timeout: Duration::from_secs(5),
        singleflight: false,
        log_level: Level::Info,
        config: None,
        listener_set: false,
        checks: Vec::new(),
    };
    let mut flags = crate::cli::Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value(flag);
        match flag {
            "--listener" => {
                let v = value()?;
                a.listener = v
                    .parse()
                    .map_err(|_| format!("--listener: bad address {v:?}"))?;
                a.listener_set = true;
            }
            "--port" => {
                let v = value()?;
                let p = v.parse::<u16>().ok().filter(|p| *p > 0);
                a.ports
                    .push(p.ok_or_else(|| format!("--port: bad port {v:?}"))?);
            }
            "--script" => {
                let words: Vec<String> = value()?.split_whitespace().map(String::from).collect();
                if words.is_empty() {
                    return Err("--script: empty command".into());
                }
                a.scripts.push(words);
            }
            "--script-timeout" => {
                let v = value()?;
                let secs = v.parse::<u64>().ok().filter(|s| (1..=86_400).contains(s));
                let secs =
                    secs.ok_or_else(|| format!("--script-timeout: {v:?} is not 1-86400 seconds"))?;
                a.script_timeout = Duration::from_secs(secs);
            }
            "--singleflight" => a.singleflight = true,
            "--config" | "-c" => a.config = Some(PathBuf::from(value()?)),
            "--log-level" => a.log_level = log_level(&value()?)?,
            other => return Err(format!("healthd: unknown argument {other}")),
        }
    }
    if a.ports.is_empty() && a.scripts.is_empty() && a.config.is_none() {
        return Err("healthd needs at least one --port, --script or --config".into());
    }
    Ok(a)
}

fn log_level(name: &str) -> Result<Level, String> {
    let found = config::LOG_LEVELS.iter().find(|(n, _)| *n == name);
    found.map(|(_, l)| *l).ok_or_else(|| {
        let names: Vec<&str> = config::LOG_LEVELS.iter().map(|(n, _)| *n).collect();
        format!("--log-level: {}", config::not_one_of(name, &names))
    })
}

/// Add what `--config FILE` says: its checks, and `[healthd]` listener and
/// singleflight where the flags did not set them. Errors: one line each.
pub fn with_file(mut args: Args) -> Result<Args, Vec<String>> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let loaded = config::parse(&text, config::Format::from_path(&path))
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let file = loaded.config.healthd;
    if file.checks.is_empty() {
        return Err(vec![format!(
            "{}: no [healthd.checks.NAME] sections",
            path.display()
        )]);
    }
    if let Some(l) = file.listener.filter(|_| !args.listener_set) {
        args.listener = l;
    }
    args.singleflight |= file.singleflight;
    args.checks = file.checks;
    Ok(args)
}

/// One evaluation: each check's name and outcome.
pub type Results = Vec<(String, Outcome)>;

/// HTTP status and body for `results`.
pub fn respond(results: &Results) -> (u16, String) {
    let mut body = String::new();
    for (name, o) in results {
        let word = verdict_word(o.verdict);
        body.push_str(&format!("{word} {name}: {} ({})\n", o.detail, o.cause));
    }
    (status(results), body)
}

/// 200 when every check passed, else 504.
fn status(results: &Results) -> u16 {
    let ok = results.iter().all(|(_, o)| o.verdict == Verdict::Pass);
    if ok { 200 } else { 504 }
}

/// Log lines for the checks whose verdict is new or changed since `seen`,
/// which is updated.
pub fn changes(seen: &mut HashMap<String, Verdict>, results: &Results) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, o) in results {
        let word = verdict_word(o.verdict);
        match seen.insert(name.clone(), o.verdict) {
            Some(before) if before == o.verdict => {}
            Some(before) => lines.push(format!(
                "{name}: {} -> {word}: {}",
                verdict_word(before),
                o.detail
            )),
            None => lines.push(format!("{name}: {word}: {}", o.detail)),
        }
    }
    lines
}

fn verdict_word(v: Verdict) -> &'static str {
    if v == Verdict::Pass { "PASS" } else { "FAIL" }
}

async fn evaluate(args: &Args, ctx: &Context) -> Results {
    let mut tasks = Vec::new();
    for p in &args.ports {
        let (p, ctx) = (*p, ctx.clone());
        tasks.push(tokio::spawn(async move {
            let t = Target::new("127.0.0.1", p);
            let o = health::run(&Check::Ping, &t, Some(PORT_TIMEOUT), &ctx).await;
            (format!("tcp 127.0.0.1:{p}"), o)
        }));
    }
    for c in &args.checks {
        let (c, ctx) = (c.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let hc = &c.healthcheck;
            let t = Target::new(&c.host, hc.port.unwrap_or(c.port));
            // The outer bound also covers the wait for an exec slot.
            let limit = hc.timeout.unwrap_or(CHECK_TIMEOUT);
            let run = health::run(&hc.check, &t, Some(limit), &ctx);
            let o = tokio::time::timeout(limit, run)
                .await
                .unwrap_or_else(|_| timed_out(limit));
            (format!("{} ({} {}:{})", c.name, hc.kind, t.host, t.port), o)
        }));
    }
    for words in &args.scripts {
        let (words, limit, ctx) = (words.clone(), args.script_timeout, ctx.clone());
        tasks.push(tokio::spawn(async move {
            let o = script(&words, limit, &ctx).await;
            (script_name(&words), o)
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => out.push((
                "check".into(),
                Outcome::fail(health::Cause::Spawn, e.to_string()),
            )),
        }
    }
    out
}

/// How a `--script` is named in responses and logs: secret-looking
/// arguments hidden (`--token <redacted>`, see `config::secrets`).
fn script_name(words: &[String]) -> String {
    format!(
        "script {}",
        crate::config::secrets::mask_args(words).join(" ")
    )
}

/// Run one `--script` once a process slot is free; the group is killed
/// when the timeout (which covers the wait) drops the run.
async fn script(words: &[String], limit: Duration, ctx: &Context) -> Outcome {
    let inv = Invocation {
        program: words[0].clone().into(),
        args: words[1..].iter().map(Into::into).collect(),
        env: Vec::new(),
        merge_stderr: true,
    };
    let run = async {
        let _slot = ctx.exec_slots.acquire().await;
        process::run(&inv).await
    };
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(done)) if done.status.success() => Outcome::pass("exit 0"),
        Ok(Ok(done)) => Outcome::fail(health::Cause::Exit, done.status.describe()),
        Ok(Err(e)) => Outcome::fail(health::Cause::Spawn, format!("{}: {e}", words[0])),
        Err(_) => timed_out(limit),
    }
}

fn timed_out(limit: Duration) -> Outcome {
    Outcome::fail(
        health::Cause::Timeout,
        format!("no result within {}", health::fmt_duration(limit)),
    )
}

/// A shared evaluation: the first request runs it, later ones wait.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Results>>,
    done: Condvar,
}

struct Shared {
    args: Args,
    ctx: Context,
    rt: tokio::runtime::Handle,
    current: Mutex<Option<Arc<Flight>>>,
    /// Each check's last verdict, for [`changes`].
    seen: Mutex<HashMap<String, Verdict>>,
}

impl Shared {
    /// Run every check once and log what changed.
    fn evaluate(&self) -> Results {
        let results = self.rt.block_on(evaluate(&self.args, &self.ctx));
        let lines = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            changes(&mut seen, &results)
        };
        lines.iter().for_each(|l| info!(LOG, "{l}"));
        debug!(
            LOG,
            "evaluated {} checks: {}",
            results.len(),
            status(&results)
        );
        results
    }

    fn results(&self) -> Results {
        if !self.args.singleflight {
            return self.evaluate();
        }
        let (flight, leader) = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            match &*cur {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight::default());
                    *cur = Some(Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if leader {
            let r = self.evaluate();
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
            *flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
            flight.done.notify_all();
            return r;
        }
        let mut slot = flight.result.lock().unwrap_or_else(|p| p.into_inner());
        while slot.is_none() {
            slot = flight.done.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
        slot.clone().unwrap_or_default()
    }
}

/// Serve until killed; returns the exit code.
pub fn run(args: Args) -> i32 {
    let args = match with_file(args) {
        Ok(a) => a,
        Err(errors) => {
            errors
                .iter()
                .for_each(|e| eprintln!("betwixt healthd: {e}"));
            return 2;
        }
    };
    let logging = Logging {
        level: args.log_level,
        output: LogOutput::Stderr,
        format: LogFormat::Text,
    };
    if let Err(e) = crate::log::configure(&logging) {
        eprintln!("betwixt healthd: logging: {e}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("betwixt healthd: cannot start the runtime: {e}");
            return 1;
        }
    };
    // Handlers first: a SIGTERM that comes as soon as the port answers must
    // not meet the default action (or, as PID 1, be ignored).
    let stop = match stop_signals(&rt) {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("betwixt healthd: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let server = match listen(args.listener) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("betwixt healthd: cannot listen on {}: {e}", args.listener);
            return 1;
        }
    };
    info!(LOG, "listening on {}", args.listener);
    let unblock = Arc::clone(&server);
    rt.spawn(async move {
        let name = stop.await;
        info!(LOG, "{name}: stopping");
        unblock.unblock();
    });
    let shared = Arc::new(Shared {
        ctx: Context::new(MAX_PROCESSES),
        args,
        rt: rt.handle().clone(),
        current: Mutex::new(None),
        seen: Mutex::new(HashMap::new()),
    });
    serve(&server, &shared);
    // tiny_http's `Drop` for a server on an abstract unix socket unwraps
    // its (absent) path; the process is exiting, so never drop it.
    std::mem::forget(server);
    // Dropping the runtime cancels running checks; a script's group is
    // killed when its run is dropped.
    0
}

/// tiny_http behind the API's front (`crate::api::front`): a cap on
/// connections, an idle timeout, and requests framed before tiny_http
/// reads them.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tiny_http::Server> {
    use crate::api::front::{self, Upgrade};
    // Above MAX_REQUESTS, so that a flood gets 503s rather than resets.
    let unix = front::start_capped(addr, "healthd", Upgrade::Plain, MAX_REQUESTS + 64)?;
    tiny_http::Server::from_listener(unix, None).map_err(std::io::Error::other)
}

/// Resolves with the signal's name on SIGTERM or SIGINT (installed now).
fn stop_signals(
    rt: &tokio::runtime::Runtime,
) -> std::io::Result<impl Future<Output = &'static str> + use<>> {
    use tokio::signal::unix::{SignalKind, signal};
    let _entered = rt.enter();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Answer each request on its own thread until the server is unblocked.
fn serve(server: &tiny_http::Server, shared: &Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_REQUESTS));
    for request in server.incoming_requests() {
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            let body = format!("busy: {MAX_REQUESTS} requests in flight\n");
            let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(503));
            continue;
        };
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            let (status, body) = respond(&shared.results());
            let response = tiny_http::Response::from_string(body).with_status_code(status);
            let _ = request.respond(response);
        });
        if let Err(e) = spawned {
            crate::warn!(LOG, "cannot start a request thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_gruntwork_flags() {
        let a = parse(&args(&[
            "--listener",
            "127.0.0.1:5000",
            "--port",
            "5432",
            "--port=3306",
            "--script",
            "/bin/check.sh --arg x",
            "--script-timeout",
            "7",
            "--singleflight",
            "--log-level",
            "debug",
        ]))
        .unwrap();
        assert_eq!(a.listener, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(a.ports, [5432, 3306]);
        assert_eq!(a.scripts, [args(&["/bin/check.sh", "--arg", "x"])]);
        assert_eq!(a.script_timeout, Duration::from_secs(7));
        assert!(a.singleflight);
        assert_eq!(a.log_level, Level::Debug);
        for bad in [
            &[][..],
            &["--port", "0"],
            &["--port", "1", "--bogus"],
            &["--script", " "],
            &["--port", "1", "--script-timeout", "0"],
            &["--port", "1", "--log-level", "verbose"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_file_adds_checks_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("healthd.toml");
        let text = "[healthd]\nlistener = \"127.0.0.1:5001\"\nsingleflight = true\n\
            [healthd.checks.web]\naddress = \"127.0.0.1:8080\"\n\
            [healthd.checks.web.healthcheck]\nkind = \"http\"\npath = \"/ready\"\ntimeout = \"2s\"\n\
            [healthd.checks.dns]\naddress = \"[::1]:53\"\n\
            [healthd.checks.dns.healthcheck]\nkind = \"probe\"\nprobe_protocol = \"udp\"\n\
            probe_send = 'x'\nprobe_recv = 'y'\n";
        std::fs::write(&path, text).unwrap();
        let p = path.to_string_lossy().into_owned();
        let a = with_file(parse(&args(&["-c", &p])).unwrap()).unwrap();
        assert_eq!(a.listener, "127.0.0.1:5001".parse().unwrap());
        assert!(a.singleflight);
        let names: Vec<_> = a
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.host.as_str(), c.port))
            .collect();
        assert_eq!(names, [("dns", "::1", 53), ("web", "127.0.0.1", 8080)]);
        assert_eq!(
            a.checks[1].healthcheck.timeout,
            Some(Duration::from_secs(2))
        );
        // The flag wins over the file.
        let a =
            with_file(parse(&args(&["-c", &p, "--listener", "127.0.0.1:6000"])).unwrap()).unwrap();
        assert_eq!(a.listener, "127.0.0.1:6000".parse().unwrap());
        // Every problem, named by section and key.
        std::fs::write(&path, "[healthd.checks.x]\naddress = \"nope\"\n[healthd.checks.x.healthcheck]\nkind = \"htp\"\n").unwrap();
        let errors = with_file(parse(&args(&["-c", &p])).unwrap()).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("healthd.checks.x.address")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("healthd.checks.x.healthcheck.kind")),
            "{errors:?}"
        );
    }

    #[test]
    fn script_names_hide_secret_arguments() {
        let words = [
            "/bin/check",
            "--password",
            "S1",
            "--url=http://h/?k=S2",
            "-v",
        ]
        .map(String::from);
        let name = script_name(&words);
        assert_eq!(
            name,
            "script /bin/check --password <redacted> --url=http://h/?k=<redacted> -v"
        );
    }

    #[test]
    fn all_pass_is_200_any_fail_is_504() {
        let pass = ("a".to_string(), Outcome::pass("ok"));
        let fail = (
            "b".to_string(),
            Outcome::fail(health::Cause::Exit, "exit 1"),
        );
        assert_eq!(respond(&vec![pass.clone()]).0, 200);
        let (code, body) = respond(&vec![pass, fail]);
        assert_eq!(code, 504);
        assert_eq!(body, "PASS a: ok (ok)\nFAIL b: exit 1 (exit_status)\n");
    }

    #[test]
    fn logs_first_verdicts_and_changes_only() {
        let pass = |n: &str| (n.to_string(), Outcome::pass("ok"));
        let fail = |n: &str| {
            let o = Outcome::fail(health::Cause::Refused, "connection refused");
            (n.to_string(), o)
        };
        let mut seen = HashMap::new();
        assert_eq!(
            changes(&mut seen, &vec![pass("a"), fail("b")]),
            ["a: PASS: ok", "b: FAIL: connection refused"]
        );
        assert!(changes(&mut seen, &vec![pass("a"), fail("b")]).is_empty());
        assert_eq!(
            changes(&mut seen, &vec![fail("a"), pass("b")]),
            ["a: PASS -> FAIL: connection refused", "b: FAIL -> PASS: ok"]
        );
    }
}

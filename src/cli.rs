//! Command line: parse arguments (pure) and run the chosen action.

use std::path::PathBuf;

use std::time::Duration;

use crate::config::{Format, duration};
use crate::daemon::{self, Source};
use crate::discovery::source::Remote;
use crate::health::{self, Context, Verdict, url};

const DEFAULT_CONFIG: &str = "/etc/betwixt/betwixt.toml";

const USAGE: &str = "\
betwixt - L4 load balancer and health-check daemon (gobetween-compatible)

USAGE:
    betwixt [OPTIONS]                 run with -c FILE, or /etc/betwixt/betwixt.toml
    betwixt from-file FILE [OPTIONS]  run with FILE (same as -c FILE)
    betwixt from-url URL [OPTIONS]    run with the config fetched from URL (http/https;
                                      a non-2xx answer is an error); SIGHUP fetches again
    betwixt from-consul HOST:PORT [-k KEY] [-s http|https] [OPTIONS]
                                      run with the value of Consul KV key KEY
                                      (default \"gobetween\"); SIGHUP fetches again
    betwixt check URL [CHECK OPTIONS] run one health check and exit
    betwixt healthd [HEALTHD OPTIONS] health endpoint for an upstream load balancer

OPTIONS:
    -c, --config FILE           config file (TOML or JSON, gobetween's keys)
    -f, --format toml|json      config format (default: by file extension, else toml)
    -t, --test                  validate the config, print every problem, and exit:
                                0 and \"configuration OK\" if valid, 2 otherwise
    -p, --pidfile FILE          write the pid to FILE; refuse to start if FILE names
                                a live process; removed on exit
    -e, --use-config-env-vars   replace ${NAME} in the config with environment values
                                (unset = empty)
    -V, -v, --version           print the version
    -h, --help                  print this help

CHECK (exit 0 healthy, 1 unhealthy, 2 usage error; one line on stderr says why):
    betwixt check http://HOST[:PORT][/PATH]   GET, healthy on status 200-399
    betwixt check https://HOST[:PORT][/PATH] [--insecure]
                                              --insecure: skip certificate checks
    betwixt check tcp://HOST:PORT             a TCP connect
    betwixt check udp://HOST:PORT --send S --expect S
                                              one datagram; the reply must start
                                              with S (escapes like \\n, \\x00)
    betwixt check icmp://HOST                 3 echo requests, one reply suffices
    --timeout D                 the whole check's bound: 3s (default), 500ms, or
                                seconds as a number
    IPv6: write [ADDR] or [ADDR]:PORT.

HEALTHD (a drop-in for gruntwork's health-checker): any request to the
listener runs every check at once: 200 if all pass, 504 if any fails, one
line per check in the body.
    --listener ADDR:PORT        where to listen (default 0.0.0.0:5000)
    --port N                    a TCP connect to 127.0.0.1:N (repeatable)
    --script \"CMD ARGS\"         run CMD ARGS (no shell; repeatable); exit 0 passes
    --script-timeout SECS       kill a script's process group after SECS (default 5)
    --singleflight              concurrent requests share one evaluation
    -c, --config FILE           add the checks of FILE's [healthd.checks.NAME]
                                sections (any health-check kind; docs/CONFIG.md)
    --log-level LEVEL           stderr log: error, warn, info (default: each
                                check's first verdict and its changes) or
                                debug (every evaluation)
    SIGTERM, SIGINT             stop and exit 0 (also as a container's PID 1)
    At most 256 requests in flight (more get 503 at once) and 64 scripts or
    exec checks running at once; waiting for a slot counts toward the timeout.

SIGNALS:
    SIGHUP   reload the config; an invalid one is logged and the old one kept;
             unchanged servers keep their listeners and connections
    SIGTERM  stop accepting, let connections finish (up to drain_timeout), exit 0
    SIGINT   exit at once (also during a SIGTERM drain)

EXIT CODES:
    0 ok, 1 runtime failure (bind, pidfile...), 2 usage or configuration error
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Version,
    Run(RunArgs),
    Check(CheckArgs),
    Healthd(crate::healthd::Args),
}

/// `betwixt check URL ...`: the URL is known to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckArgs {
    pub url: String,
    pub timeout: Duration,
    pub opts: url::Options,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub config: PathBuf,
    pub format: Option<Format>,
    pub test: bool,
    pub pidfile: Option<PathBuf>,
    pub env_vars: bool,
    /// `from-url` / `from-consul`.
    pub remote: Option<Remote>,
}

/// Parse arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut run = RunArgs {
        config: PathBuf::from(DEFAULT_CONFIG),
        format: None,
        test: false,
        pidfile: None,
        env_vars: false,
        remote: None,
    };
    if args.first().is_some_and(|a| a == "check") {
        return parse_check(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "healthd") {
        if args[1..].iter().any(|a| a == "-h" || a == "--help") {
            return Ok(Command::Help);
        }
        return crate::healthd::parse(&args[1..]).map(Command::Healthd);
    }
    let mut flags = Flags::new(args);
    let mut seen_config = false;
    let mut consul: Option<String> = None;
    let (mut key, mut scheme) = ("gobetween".to_string(), "http".to_string());
    while let Some(flag) = flags.next_flag() {
        let mut value = |name: &str| flags.value(name);
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "-v" | "--version" => return Ok(Command::Version),
            "-t" | "--test" | "--check" => run.test = true,
            "-e" | "--use-config-env-vars" => run.env_vars = true,
            "-c" | "--config" => {
                run.config = PathBuf::from(value(flag)?);
                seen_config = true;
            }
            "-p" | "--pidfile" => run.pidfile = Some(PathBuf::from(value(flag)?)),
            "-f" | "--format" => run.format = Some(parse_format(&value(flag)?)?),
            "from-file" if !seen_config => {
                run.config = PathBuf::from(value("from-file")?);
                seen_config = true;
            }
            "from-url" if !seen_config => {
                run.remote = Some(Remote::Url(value("from-url")?));
                seen_config = true;
            }
            "from-consul" if !seen_config => {
                consul = Some(value("from-consul")?);
                seen_config = true;
            }
            "-k" | "--key" => key = value(flag)?,
            "-s" | "--scheme" => scheme = value(flag)?,
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if let Some(host) = consul {
        if key.is_empty() {
            return Err("from-consul: the key (-k) is empty".into());
        }
        let tls = match scheme.as_str() {
            "http" => false,
            "https" => true,
            other => return Err(format!("unknown scheme {other:?} (use http or https)")),
        };
        let (https, host) = crate::discovery::consul::split_host(&host, tls)
            .map_err(|e| format!("from-consul: {e}"))?;
        let host = host.to_string();
        run.remote = Some(Remote::Consul { host, key, https });
    }
    if let Some(r) = &run.remote {
        run.config = PathBuf::from(crate::discovery::web::redact(&r.url()));
    }
    Ok(Command::Run(run))
}

/// Command-line words as flags: `--flag=value` is split at `=`, and a
/// flag's value is the inline part or else the next word.
pub(crate) struct Flags<'a> {
    words: std::slice::Iter<'a, String>,
    inline: Option<&'a str>,
}

impl<'a> Flags<'a> {
    pub(crate) fn new(words: &'a [String]) -> Self {
        Self {
            words: words.iter(),
            inline: None,
        }
    }

    /// The next flag (or positional word).
    pub(crate) fn next_flag(&mut self) -> Option<&'a str> {
        let word = self.words.next()?;
        match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => {
                self.inline = Some(v);
                Some(f)
            }
            _ => {
                self.inline = None;
                Some(word)
            }
        }
    }

    /// The value of the flag just returned by [`Self::next_flag`].
    pub(crate) fn value(&mut self, name: &str) -> Result<String, String> {
        match self.inline.take() {
            Some(v) => Ok(v.to_string()),
            None => self
                .words
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value")),
        }
    }
}

fn parse_check(args: &[String]) -> Result<Command, String> {
    let mut url_arg = None;
    let mut timeout = CHECK_TIMEOUT;
    let mut opts = url::Options::default();
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let mut value = |name: &str| flags.value(name);
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--timeout" => timeout = parse_timeout(&value(flag)?)?,
            "--insecure" => opts.insecure = true,
            "--send" => opts.send = Some(value(flag)?),
            "--expect" => opts.expect = Some(value(flag)?),
            other if other.starts_with('-') => {
                return Err(format!("check: unknown option {other}"));
            }
            _ if url_arg.is_some() => return Err(format!("check: unexpected argument {flag:?}")),
            _ => url_arg = Some(flag.to_string()),
        }
    }
    let url = url_arg.ok_or("check: needs a URL")?;
    url::parse(&url, &opts).map_err(|e| format!("check: {e}"))?;
    Ok(Command::Check(CheckArgs { url, timeout, opts }))
}

/// `3s`, `500ms`, or a number of seconds; more than zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = match duration::parse(s) {
        Ok(d) => d,
        Err(duration::DurationError::NoUnit) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("--timeout: bad duration {s:?}"))?,
        Err(_) => return Err(format!("--timeout: bad duration {s:?}")),
    };
    if d.is_zero() {
        return Err("--timeout must be more than 0".into());
    }
    Ok(d)
}

/// Run one check; 0 healthy, 1 not (also when it cannot run), 2 usage.
fn check(args: CheckArgs) -> i32 {
    let (check, target) = match url::parse(&args.url, &args.opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("betwixt check: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unhealthy: cannot start the runtime: {e}");
            return 1;
        }
    };
    let ctx = Context::default();
    let outcome = rt.block_on(health::run(&check, &target, Some(args.timeout), &ctx));
    rt.shutdown_timeout(Duration::from_millis(100));
    if outcome.verdict == Verdict::Pass {
        eprintln!("healthy: {}", outcome.detail);
        0
    } else {
        eprintln!("unhealthy: {}: {}", outcome.cause, outcome.detail);
        1
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s {
        "toml" => Ok(Format::Toml),
        "json" => Ok(Format::Json),
        _ => Err(format!("unknown format {s:?} (use toml or json)")),
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            0
        }
        Ok(Command::Version) => {
            println!("betwixt {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Run(run)) => start(run),
        Ok(Command::Check(c)) => check(c),
        Ok(Command::Healthd(h)) => crate::healthd::run(h),
        Err(e) if args.first().is_some_and(|a| a == "check") => {
            eprintln!(
                "betwixt check: {} (see betwixt --help)",
                e.trim_start_matches("check: ")
            );
            2
        }
        Err(e) => {
            // One line, not the whole help: the error stays on screen.
            eprintln!("betwixt: {e} (see betwixt --help)");
            2
        }
    }
}

fn start(args: RunArgs) -> i32 {
    let source = Source {
        format: args
            .format
            .unwrap_or_else(|| Format::from_path(&args.config)),
        path: args.config,
        remote: args.remote,
        env_vars: args.env_vars,
    };
    let report = |errors: &[String]| {
        for e in errors {
            eprintln!("error: {e}");
        }
        eprintln!("{}: {} error(s)", source.path.display(), errors.len());
        2
    };
    let loaded = match source.load() {
        Ok(l) => l,
        Err(errors) => return report(&errors),
    };
    if args.test {
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        let errors = daemon::file_errors(&loaded.config);
        if !errors.is_empty() {
            return report(&errors);
        }
        println!("configuration OK");
        return 0;
    }
    if let Some(p) = &args.pidfile
        && let Err(e) = check_pidfile(p)
    {
        eprintln!("betwixt: {e}");
        return 1;
    }
    daemon::run(source, loaded, args.pidfile)
}

/// Refuse to start when the pidfile names a live process.
fn check_pidfile(path: &std::path::Path) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let alive = pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
    if alive {
        Err(format!(
            "pidfile {} names a running process ({pid}); is betwixt already running?",
            path.display()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "cli_fuzz_tests.rs"]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_to_etc_config() {
        let Ok(Command::Run(r)) = parse(&[]) else {
            panic!("run")
        };
        assert_eq!(r.config, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(r.format, None);
    }

    #[test]
    fn parses_every_option() {
        let Ok(Command::Run(r)) = parse(&args("-c a.json -f toml -t -p /run/b.pid -e")) else {
            panic!("run")
        };
        assert_eq!(r.config, PathBuf::from("a.json"));
        assert_eq!(r.format, Some(Format::Toml));
        assert!(r.test && r.env_vars);
        assert_eq!(r.pidfile, Some(PathBuf::from("/run/b.pid")));
        let Ok(Command::Run(r)) = parse(&args("from-file x.toml --format=json")) else {
            panic!("run")
        };
        assert_eq!(
            (r.config, r.format),
            (PathBuf::from("x.toml"), Some(Format::Json))
        );
    }

    #[test]
    fn remote_sources() {
        let Ok(Command::Run(r)) = parse(&args("from-url http://127.0.0.1:1/c.json")) else {
            panic!("run")
        };
        assert_eq!(
            r.remote,
            Some(Remote::Url("http://127.0.0.1:1/c.json".into()))
        );
        assert_eq!(Format::from_path(&r.config), Format::Json);
        let Ok(Command::Run(r)) = parse(&args("from-consul 127.0.0.1:8500 -k lb/conf -s https"))
        else {
            panic!("run")
        };
        let want = Remote::Consul {
            host: "127.0.0.1:8500".into(),
            key: "lb/conf".into(),
            https: true,
        };
        assert_eq!(r.remote, Some(want));
        let Ok(Command::Run(r)) = parse(&args("from-consul 127.0.0.1:8500")) else {
            panic!("run")
        };
        assert!(
            matches!(r.remote, Some(Remote::Consul { key, https: false, .. }) if key == "gobetween")
        );
        let Ok(Command::Run(r)) = parse(&args("from-consul https://127.0.0.1:8500")) else {
            panic!("run")
        };
        assert!(
            matches!(r.remote, Some(Remote::Consul { host, https: true, .. }) if host == "127.0.0.1:8500")
        );
        assert!(parse(&args("from-consul http://h:1 -s https")).is_err());
        assert!(parse(&args("from-consul h:1 -s ftp")).is_err());
        assert!(parse(&args("from-consul h:1 --key=")).is_err());
        assert!(parse(&args("from-url")).is_err());
    }

    #[test]
    fn parses_check() {
        let Ok(Command::Check(c)) = parse(&args("check tcp://127.0.0.1:1 --timeout 500ms")) else {
            panic!("check")
        };
        assert_eq!(
            (c.url.as_str(), c.timeout),
            ("tcp://127.0.0.1:1", Duration::from_millis(500))
        );
        let Ok(Command::Check(c)) = parse(&args("check --timeout=2 https://[::1]/x --insecure"))
        else {
            panic!("check")
        };
        assert!(c.opts.insecure && c.timeout == Duration::from_secs(2));
        let Ok(Command::Check(c)) = parse(&args("check udp://127.0.0.1:53 --send a --expect b"))
        else {
            panic!("check")
        };
        assert_eq!(
            (c.opts.send, c.opts.expect),
            (Some("a".into()), Some("b".into()))
        );
        assert_eq!(parse(&args("check icmp://::1 --help")), Ok(Command::Help));
        for bad in [
            "check",
            "check tcp://127.0.0.1:1 tcp://127.0.0.1:2",
            "check tcp://127.0.0.1:1 --timeout",
            "check tcp://127.0.0.1:1 --timeout 0",
            "check tcp://127.0.0.1:1 --timeout 1x",
            "check tcp://127.0.0.1 ",
            "check tcp://127.0.0.1:1 --bogus",
            "check http://127.0.0.1 --send x",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(parse(&args("-c")).is_err());
        assert!(parse(&args("-f yaml")).is_err());
        // The last -c wins, as with gobetween's flags and getopt (an init
        // script's extra arguments can override its default).
        match parse(&args("-c a.toml -c b.toml")) {
            Ok(Command::Run(run)) => assert_eq!(run.config, PathBuf::from("b.toml")),
            other => panic!("{other:?}"),
        }
        assert!(parse(&args("--bogus")).is_err());
        assert!(parse(&args("stray")).is_err());
        assert_eq!(parse(&args("-V")), Ok(Command::Version));
        assert_eq!(parse(&args("--help")), Ok(Command::Help));
    }
}

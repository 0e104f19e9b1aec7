//! Command line: parse arguments (pure) and run the chosen action.

use std::path::PathBuf;

use crate::config::Format;
use crate::daemon::{self, Source};
use crate::discovery::source::Remote;

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

SIGNALS:
    SIGHUP   reload the config; an invalid one is logged and the old one kept;
             unchanged servers keep their listeners and connections
    SIGTERM  stop accepting, let connections finish (up to drain_timeout), exit 0
    SIGINT   exit at once

EXIT CODES:
    0 ok, 1 runtime failure (bind, pidfile...), 2 usage or configuration error
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Run(RunArgs),
}

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
    let mut it = args.iter();
    let mut seen_config = false;
    let mut consul: Option<String> = None;
    let (mut key, mut scheme) = ("gobetween".to_string(), "http".to_string());
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
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
        let https = match scheme.as_str() {
            "http" => false,
            "https" => true,
            other => return Err(format!("unknown scheme {other:?} (use http or https)")),
        };
        run.remote = Some(Remote::Consul { host, key, https });
    }
    if let Some(r) = &run.remote {
        run.config = PathBuf::from(crate::discovery::web::redact(&r.url()));
    }
    Ok(Command::Run(run))
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
        Err(e) => {
            eprintln!("betwixt: {e}\n\n{USAGE}");
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
    let loaded = match source.load() {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{}: {} error(s)", source.path.display(), errors.len());
            return 2;
        }
    };
    if args.test {
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
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
        assert!(parse(&args("from-consul h:1 -s ftp")).is_err());
        assert!(parse(&args("from-consul h:1 --key=")).is_err());
        assert!(parse(&args("from-url")).is_err());
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(parse(&args("-c")).is_err());
        assert!(parse(&args("-f yaml")).is_err());
        assert!(parse(&args("--bogus")).is_err());
        assert!(parse(&args("stray")).is_err());
        assert_eq!(parse(&args("-V")), Ok(Command::Version));
        assert_eq!(parse(&args("--help")), Ok(Command::Help));
    }
}

//! Value checks shared by every section: durations, enums, addresses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::Ctx;
use crate::config::duration::{self, DurationError};
use crate::config::keys::suggest;

/// How a duration key treats `"0"`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// `"0"` = none (timeouts); also explains gobetween's unit-less pitfall.
    MeansNone,
    /// `"0"` is allowed and kept as zero.
    Allowed,
    /// Must be > 0.
    Rejected,
}

/// Parse a set duration key. `Err(())` when an error was reported.
pub fn duration(ctx: &mut Ctx, path: &str, text: &str, zero: Zero) -> Result<Duration, ()> {
    match duration::parse(text) {
        Ok(d) if d.is_zero() && zero == Zero::Rejected => {
            ctx.error(path, format!("\"{text}\" must be greater than 0"));
            Err(())
        }
        Ok(d) => Ok(d),
        Err(e) => {
            ctx.error(path, duration_message(text, e, zero));
            Err(())
        }
    }
}

fn duration_message(text: &str, e: DurationError, zero: Zero) -> String {
    match e {
        DurationError::NoUnit if zero == Zero::MeansNone => format!(
            "\"{text}\" has no unit (write \"{text}s\" or \"{text}ms\"); \
             gobetween would silently disable the timeout"
        ),
        DurationError::NoUnit => {
            format!("\"{text}\" has no unit (write \"{text}s\" or \"{text}ms\")")
        }
        DurationError::Negative => format!("\"{text}\": negative durations are not allowed"),
        DurationError::TooLarge => format!("\"{text}\" is too large"),
        DurationError::Invalid => {
            format!("\"{text}\" is not a duration (examples: \"500ms\", \"2s\", \"1m30s\", \"1h\")")
        }
    }
}

/// An optional timeout: unset, `""` and `"0"` give `None`.
pub fn timeout(ctx: &mut Ctx, path: &str, text: Option<&String>) -> Option<Duration> {
    let text = text.filter(|t| !t.is_empty())?;
    duration(ctx, path, text, Zero::MeansNone)
        .ok()
        .filter(|d| !d.is_zero())
}

/// A duration with a default when unset or `""`.
pub fn duration_or(
    ctx: &mut Ctx,
    path: &str,
    text: Option<&String>,
    zero: Zero,
    default: Duration,
) -> Duration {
    match text.filter(|t| !t.is_empty()) {
        Some(t) => duration(ctx, path, t, zero).unwrap_or(default),
        None => default,
    }
}

/// One of a fixed set of names. Unset or `""` gives `default`.
pub fn choice<T: Copy>(
    ctx: &mut Ctx,
    path: &str,
    value: Option<&String>,
    options: &[(&'static str, T)],
    default: T,
) -> T {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return default;
    };
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == value.as_str()) {
        return *t;
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    ctx.error(path, not_one_of(value, &names));
    default
}

/// `"x" is not one of: a, b (did you mean "a"?)`.
pub fn not_one_of(value: &str, names: &[&str]) -> String {
    let mut message = format!("\"{value}\" is not one of: {}", names.join(", "));
    if let Some(s) = suggest(value, names) {
        message.push_str(&format!(" (did you mean \"{s}\"?)"));
    }
    message
}

/// A listen address: `host:port`, `[v6]:port`, or `:port` (= 0.0.0.0:port).
/// Host names are resolved now; the first address is used.
pub fn bind_addr(text: &str) -> Result<SocketAddr, String> {
    if text.is_empty() {
        return Err("empty address; expected \"host:port\"".into());
    }
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    let addr = match full.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => resolve(text, &full)?,
    };
    if addr.port() == 0 {
        return Err(format!("\"{text}\": the port must be 1-65535"));
    }
    Ok(addr)
}

fn resolve(text: &str, full: &str) -> Result<SocketAddr, String> {
    let Some((host, port)) = full.rsplit_once(':') else {
        return Err(format!("\"{text}\": expected \"host:port\""));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("\"{text}\": the port must be a number 1-65535"))?;
    if host.contains(':') || host.starts_with('[') {
        return Err(format!(
            "\"{text}\": not an address; write IPv6 in brackets, e.g. \"[::1]:{port}\""
        ));
    }
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("\"{text}\": bad host name"));
    }
    #[cfg(test)]
    if NO_LOOKUP.with(std::cell::Cell::get) && host != "localhost" {
        return Err(format!("\"{text}\": name lookups are off in this test"));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("\"{text}\": cannot resolve \"{host}\": {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("\"{text}\": \"{host}\" has no address"))
}

#[cfg(test)]
thread_local! {
    /// Set by fuzz tests: a mutated `bind` must not look up a made-up
    /// name (the test machine's resolver is unreachable, a lookup hangs).
    pub static NO_LOOKUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `host:port` with a non-empty host and a numeric port (not resolved).
pub fn host_port(text: &str) -> Result<(), String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("\"{text}\": expected \"host:port\"")),
    }
}

/// An `http://` or `https://` URL that the HTTP client accepts.
pub fn http_url(text: &str) -> Result<(), String> {
    // The parser the HTTP client uses: what passes here dials at run time.
    crate::http::Url::parse(text).map(|_| ())
}

/// Strings as is, arrays one item per line, others as JSON/TOML write them.
pub fn value_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(value_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value_string(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// Why a config regexp does not compile: the regex crate's message, and
/// when it is a Unicode property class this build leaves out, how to get one.
pub fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    if cfg!(feature = "regex-unicode") || !text.contains("Unicode property not found") {
        return text;
    }
    format!(
        "{text}\n(Unicode property classes such as \\p{{Greek}} or \\pL are only in builds \
         with the Cargo feature \"regex-unicode\"; \\d \\w \\s and (?i) work in every build)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_forms() {
        let ok = [
            ("0.0.0.0:80", "0.0.0.0:80"),
            (":3000", "0.0.0.0:3000"),
            ("[::1]:8000", "[::1]:8000"),
            ("[::]:53", "[::]:53"),
            ("127.0.0.1:1", "127.0.0.1:1"),
        ];
        for (text, want) in ok {
            assert_eq!(bind_addr(text).unwrap().to_string(), want, "{text}");
        }
        assert!(bind_addr("localhost:80").unwrap().ip().is_loopback());
        for bad in [
            "",
            "80",
            ":0",
            ":x",
            "::1:80",
            "[::1]",
            "1.2.3.4:99999",
            "a b:80",
        ] {
            assert!(bind_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bind_without_a_port_is_an_error() {
        // (No test resolves a bad name: that would send a DNS query off the box.)
        assert!(bind_addr("localhost").is_err());
        assert!(bind_addr("127.0.0.1:http").is_err());
    }

    #[test]
    fn urls_and_host_ports() {
        assert!(http_url("http://x/").is_ok());
        assert!(http_url("ftp://x/").is_err());
        assert!(http_url("https://").is_err());
        assert!(host_port("198.18.0.1:53").is_ok());
        assert!(host_port("198.18.0.1").is_err());
        assert!(host_port(":53").is_err());
    }
}

//! Logging: gobetween's text line format or JSON lines, to stdout, stderr or a file.
//!
//! `YYYY-MM-DD HH:MM:SS [LEVEL] (component): message` in UTC. The logger is a
//! process-wide value that [`configure`] replaces (on start and on reload).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Level, LogFormat, LogOutput, Logging};

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

struct Sink {
    format: LogFormat,
    out: Box<dyn Write + Send>,
}

/// Apply a `[logging]` section. A file that cannot be opened is an error and
/// leaves the previous logger in place.
pub fn configure(cfg: &Logging) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match &cfg.output {
        LogOutput::Stdout => Box::new(std::io::stdout()),
        LogOutput::Stderr => Box::new(std::io::stderr()),
        LogOutput::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot open output {}: {e}", p.display()),
                    )
                })?,
        ),
    };
    if let Ok(mut sink) = SINK.lock() {
        *sink = Some(Sink {
            format: cfg.format,
            out,
        });
    }
    LEVEL.store(cfg.level as u8, Ordering::Relaxed);
    Ok(())
}

/// Whether [`configure`] could open the output file (for `betwixt -t`),
/// without creating or changing anything: an existing file must open for
/// appending, a new one needs a writable directory.
pub fn check_output(cfg: &Logging) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let LogOutput::File(path) = &cfg.output else {
        return Ok(());
    };
    let fail =
        |e: &dyn std::fmt::Display| format!("logging.output: cannot open {}: {e}", path.display());
    if path.exists() {
        let file = std::fs::OpenOptions::new().append(true).open(path);
        return file.map(drop).map_err(|e| fail(&e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(fail(&format!("{} is not a directory", dir.display())));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| fail(&e))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(fail(&std::io::Error::last_os_error()));
    }
    Ok(())
}

/// True when a message at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Write one record. Use the `error!`..`debug!` macros instead.
pub fn write(level: Level, component: &str, message: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let stamp = timestamp(SystemTime::now());
    let Ok(mut guard) = SINK.lock() else { return };
    let line = match guard.as_ref().map(|s| s.format) {
        Some(LogFormat::Json) => format!(
            "{{\"time\":\"{}\",\"level\":\"{}\",\"component\":{},\"msg\":{}}}\n",
            stamp,
            level_name(level).to_ascii_lowercase(),
            json_str(component),
            json_str(&message.to_string())
        ),
        _ => format!(
            "{stamp} [{}] ({component}): {}\n",
            level_name(level),
            one_line(&message.to_string())
        ),
    };
    match guard.as_mut() {
        Some(sink) => {
            let _ = sink.out.write_all(line.as_bytes());
            let _ = sink.out.flush();
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// A text-format message as one line: line breaks and other control
/// characters (in an HTTP error body, a script's output...) are escaped, so
/// a record is always one line and no text from outside can forge another.
fn one_line(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.chars().any(|c| c.is_control() && c != '\t') {
        return message.into();
    }
    let mut out = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.into()
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// At most one line per period for a message that each connection or
/// datagram could write (e.g. "no backend available" under a flood).
#[derive(Debug, Default)]
pub struct Throttle {
    /// When the next line may be written (milliseconds, caller's clock).
    next: AtomicU64,
    skipped: AtomicU64,
}

impl Throttle {
    /// `Some(lines skipped since the last one)` when a line may be written
    /// at `now`; then none until `every_ms` later. Pure: time is passed in.
    pub fn pass(&self, now: u64, every_ms: u64) -> Option<u64> {
        self.pass_if(false, now, every_ms)
    }

    /// [`Self::pass`], or at once when `force` (e.g. the message changed).
    pub fn pass_if(&self, force: bool, now: u64, every_ms: u64) -> Option<u64> {
        let next = self.next.load(Ordering::Relaxed);
        let won = (force || now >= next)
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(every_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if won {
            Some(self.skipped.swap(0, Ordering::Relaxed))
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// `" (N more since the last such line)"`, or nothing for 0.
pub fn skipped_note(skipped: u64) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} more since the last such line)")
    }
}

#[macro_export]
macro_rules! error {
    ($comp:expr, $($arg:tt)+) => { $crate::log::write($crate::config::Level::Error, $comp, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! warn {
    ($comp:expr, $($arg:tt)+) => { $crate::log::write($crate::config::Level::Warn, $comp, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! info {
    ($comp:expr, $($arg:tt)+) => { $crate::log::write($crate::config::Level::Info, $comp, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! debug {
    ($comp:expr, $($arg:tt)+) => {
        if $crate::log::enabled($crate::config::Level::Debug) {
            $crate::log::write($crate::config::Level::Debug, $comp, format_args!($($arg)+))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.pass(1_000, 5_000), Some(0));
        assert_eq!(t.pass(1_001, 5_000), None);
        assert_eq!(t.pass(5_999, 5_000), None);
        assert_eq!(t.pass(6_000, 5_000), Some(2));
        assert_eq!(t.pass(6_000, 5_000), None);
        assert_eq!(skipped_note(0), "");
        assert_eq!(skipped_note(2), " (2 more since the last such line)");
    }

    #[test]
    fn text_records_are_one_line() {
        assert_eq!(one_line("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            one_line("404: <html>\r\n2026-01-01 [ERROR] (x): forged\u{1b}[0m"),
            "404: <html>\\r\\n2026-01-01 [ERROR] (x): forged\\u{1b}[0m"
        );
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_208_000 + 3661); // 2024-02-29 13:01:01
        assert_eq!(timestamp(t), "2024-02-29 13:01:01");
    }
}

//! The result of one health check: a verdict, why, and what was seen.

use std::fmt;
use std::time::Duration;

/// What one check says about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Fail,
    /// Neither (an `exec` check printed something unexpected): the state
    /// machine ignores it, the history keeps it.
    Unknown,
}

/// Why a check ended as it did; a closed set so that metrics can count
/// results by cause. [`Outcome::detail`] carries the specifics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Passed.
    Ok,
    /// TCP connection refused (RST) or ICMP port unreachable (UDP).
    Refused,
    /// No answer within the check's timeout.
    Timeout,
    /// Any other socket or resolution error.
    Network,
    /// TLS handshake or certificate failure.
    Tls,
    /// Probe reply did not match `probe_recv`.
    Mismatch,
    /// HTTP status outside `expected_status` (or webhook not 2xx).
    BadStatus,
    /// HTTP body did not contain `contains`.
    BodyMismatch,
    /// The peer's HTTP response could not be parsed.
    BadResponse,
    /// A script or command exited non-zero (or with the negative output).
    Exit,
    /// A script or command could not be started.
    Spawn,
    /// An `exec` check printed neither expected output.
    Unexpected,
    /// No ICMP echo reply.
    NoReply,
    /// The check cannot run on this host (no ICMP socket, ...).
    Unavailable,
}

impl Cause {
    pub const ALL: [Cause; 14] = [
        Cause::Ok,
        Cause::Refused,
        Cause::Timeout,
        Cause::Network,
        Cause::Tls,
        Cause::Mismatch,
        Cause::BadStatus,
        Cause::BodyMismatch,
        Cause::BadResponse,
        Cause::Exit,
        Cause::Spawn,
        Cause::Unexpected,
        Cause::NoReply,
        Cause::Unavailable,
    ];

    /// Stable snake_case label, for logs, the API and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Ok => "ok",
            Cause::Refused => "refused",
            Cause::Timeout => "timeout",
            Cause::Network => "network_error",
            Cause::Tls => "tls_error",
            Cause::Mismatch => "probe_mismatch",
            Cause::BadStatus => "bad_status",
            Cause::BodyMismatch => "body_mismatch",
            Cause::BadResponse => "bad_response",
            Cause::Exit => "exit_status",
            Cause::Spawn => "spawn_error",
            Cause::Unexpected => "unexpected_output",
            Cause::NoReply => "no_icmp_reply",
            Cause::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Captured script/command output is cut to this many bytes.
pub const OUTPUT_CAP: usize = 4096;

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub cause: Cause,
    /// Human-readable specifics: "connect refused", "status 503", "exit 2".
    pub detail: String,
    /// Captured stdout/stderr of scripts and commands (at most [`OUTPUT_CAP`]).
    pub output: Option<String>,
    /// Round-trip time measured by the check itself (ICMP average).
    pub rtt: Option<Duration>,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Self {
        Self::new(Verdict::Pass, Cause::Ok, detail)
    }

    pub fn fail(cause: Cause, detail: impl Into<String>) -> Self {
        Self::new(Verdict::Fail, cause, detail)
    }

    pub fn unknown(cause: Cause, detail: impl Into<String>) -> Self {
        Self::new(Verdict::Unknown, cause, detail)
    }

    fn new(verdict: Verdict, cause: Cause, detail: impl Into<String>) -> Self {
        Self {
            verdict,
            cause,
            detail: detail.into(),
            output: None,
            rtt: None,
        }
    }

    pub fn with_output(mut self, output: Option<String>) -> Self {
        self.output = output;
        self
    }

    pub fn with_rtt(mut self, rtt: Option<Duration>) -> Self {
        self.rtt = rtt;
        self
    }

    /// Classify a socket error: refused, timed out, or other.
    pub fn from_io(what: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let cause = match e.kind() {
            ErrorKind::ConnectionRefused => Cause::Refused,
            ErrorKind::TimedOut => Cause::Timeout,
            _ => Cause::Network,
        };
        Self::fail(cause, format!("{what}: {e}"))
    }
}

/// Cut `bytes` to [`OUTPUT_CAP`] on a char boundary, lossily decoded.
pub fn capture(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(OUTPUT_CAP)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    while s.len() > OUTPUT_CAP {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = Cause::ALL.iter().map(|c| c.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Cause::ALL.len());
    }

    #[test]
    fn io_errors_are_classified() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Outcome::from_io("connect", &refused).cause, Cause::Refused);
        let other = std::io::Error::from(std::io::ErrorKind::Other);
        assert_eq!(Outcome::from_io("connect", &other).cause, Cause::Network);
    }

    #[test]
    fn capture_caps_and_survives_bad_utf8() {
        let big = vec![b'a'; OUTPUT_CAP * 2];
        assert_eq!(capture(&big).len(), OUTPUT_CAP);
        let mut bad = vec![b'x'; OUTPUT_CAP - 1];
        bad.push(0xff);
        assert!(capture(&bad).len() <= OUTPUT_CAP);
    }
}

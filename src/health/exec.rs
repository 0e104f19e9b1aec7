//! `exec`: run `command HOST PORT` without a shell, compare its stdout.

use std::time::Duration;

use super::{Cause, Outcome, Target};

pub async fn check(
    _command: &str,
    _positive: Option<&str>,
    _negative: Option<&str>,
    _target: &Target,
    _timeout: Option<Duration>,
) -> Outcome {
    Outcome::fail(Cause::Unavailable, "exec checks are not built yet")
}

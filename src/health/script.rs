//! `script`: a script file or inline content; exit 0 = healthy.

use std::time::Duration;

use super::{Cause, Outcome, Target};
use crate::config::Script;

pub async fn check(_script: &Script, _target: &Target, _timeout: Option<Duration>) -> Outcome {
    Outcome::fail(Cause::Unavailable, "script checks are not built yet")
}

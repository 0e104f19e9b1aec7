//! `icmp`: echo requests over a ping socket or a raw socket.

use std::time::Duration;

use super::{Cause, Outcome, Target};

pub async fn check(_count: u32, _target: &Target, _timeout: Option<Duration>) -> Outcome {
    Outcome::fail(Cause::Unavailable, "icmp checks are not built yet")
}

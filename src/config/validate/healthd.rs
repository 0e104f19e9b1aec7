//! `[healthd]`: the checks `betwixt healthd -c FILE` runs on each request.
//!
//! Each `[healthd.checks.NAME]` names an `address` (`host:port`, `[v6]:port`)
//! and a `healthcheck` table with the same keys as a server's; `interval`
//! is not used by healthd (checks run per request) and may be left out.

use super::{Ctx, healthcheck, join};
use crate::config::raw::{RawHealthd, RawHealthdCheck};
use crate::config::{Healthd, HealthdCheck, Protocol};
use crate::discovery::static_list::parse_line;

/// Stands in for `interval` when a healthd check leaves it out, so the
/// shared validation (timeout < interval) holds for any sane timeout.
const UNUSED_INTERVAL: &str = "24h";

pub fn healthd(ctx: &mut Ctx, raw: Option<&RawHealthd>) -> Healthd {
    let Some(raw) = raw else {
        return Healthd::default();
    };
    let listener = raw.listener.as_ref().and_then(|l| match l.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                "healthd.listener",
                format!("{l:?} is not an IP:port address"),
            );
            None
        }
    });
    let checks = raw
        .checks
        .iter()
        .flatten()
        .filter_map(|(name, c)| check(ctx, &format!("healthd.checks.{name}"), name, c))
        .collect();
    Healthd {
        listener,
        singleflight: raw.singleflight.unwrap_or(false),
        checks,
    }
}

fn check(ctx: &mut Ctx, base: &str, name: &str, raw: &RawHealthdCheck) -> Option<HealthdCheck> {
    let address = join(base, "address");
    let spec = match raw.address.as_deref() {
        None | Some("") => {
            ctx.error(&address, "required: host:port to check");
            None
        }
        Some(a) => parse_line(a)
            .map_err(|e| ctx.error(&address, format!("{a:?}: {e}")))
            .ok(),
    };
    let hc_path = join(base, "healthcheck");
    let Some(mut hc_raw) = raw.healthcheck.clone() else {
        ctx.error(
            &hc_path,
            "required: the check to run (same keys as a server's)",
        );
        return None;
    };
    if hc_raw.interval.is_none() {
        hc_raw.interval = Some(UNUSED_INTERVAL.into());
    }
    let hc = healthcheck::healthcheck(ctx, &hc_path, Some(&hc_raw), Protocol::Tcp);
    let spec = spec?;
    Some(HealthdCheck {
        name: name.to_string(),
        host: spec
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: spec.port,
        healthcheck: hc,
    })
}

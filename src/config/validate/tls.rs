//! `sni`, `tls`, `backends_tls` and `udp` sub-sections of a server, with
//! their cross-key rules.

use std::path::PathBuf;

use super::globals::cert_pair;
use super::values::{Zero, choice, duration_or, not_one_of};
use super::{Ctx, join};
use crate::config::raw::*;
use crate::config::*;

pub const SNI_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
pub const UDP_MAX_SESSIONS: u32 = 10_000;
const TLS_VERSIONS: [&str; 4] = ["tls1", "tls1.1", "tls1.2", "tls1.3"];

/// Go's cipher suite names that rustls implements, with their IANA codes
/// (the `_CHACHA20_POLY1305` spellings without `_SHA256` are Go aliases).
pub const CIPHER_SUITES: [(&str, u16); 11] = [
    ("TLS_AES_128_GCM_SHA256", 0x1301),
    ("TLS_AES_256_GCM_SHA384", 0x1302),
    ("TLS_CHACHA20_POLY1305_SHA256", 0x1303),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xc02b),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xc02c),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xc02f),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xc030),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca8),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca9),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", 0xcca8),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", 0xcca9),
];

/// Go names of suites rustls does not implement (CBC, RC4, 3DES, static RSA).
const LEGACY_CIPHERS: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The IANA code of a Go cipher suite name that rustls implements.
pub fn cipher_code(name: &str) -> Option<u16> {
    CIPHER_SUITES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
}

/// Every name must be one rustls implements.
fn ciphers(ctx: &mut Ctx, base: &str, raw: &Option<Vec<String>>) -> Vec<String> {
    let list = raw.clone().unwrap_or_default();
    for (i, name) in list.iter().enumerate() {
        let at = format!("{}[{i}]", join(base, "ciphers"));
        if cipher_code(name).is_some() {
            continue;
        }
        if LEGACY_CIPHERS.contains(&name.as_str()) {
            ctx.error(
                &at,
                format!("{name:?} is a legacy suite rustls does not implement (CBC, RC4, 3DES or static RSA)"),
            );
        } else {
            let known: Vec<&str> = CIPHER_SUITES.iter().map(|(n, _)| *n).collect();
            ctx.error(&at, not_one_of(name, &known));
        }
    }
    list
}

pub struct Sections {
    pub sni: Option<Sni>,
    pub tls: Option<Tls>,
    pub backends_tls: Option<BackendsTls>,
    pub udp: Option<Udp>,
}

pub fn sections(ctx: &mut Ctx, base: &str, raw: &RawServer, protocol: Protocol) -> Sections {
    let sni = raw
        .sni
        .as_ref()
        .map(|s| sni(ctx, &join(base, "sni"), s, protocol));
    let tls = server_tls(ctx, &join(base, "tls"), raw.tls.as_ref(), protocol);
    let backends_tls = raw
        .backends_tls
        .as_ref()
        .map(|b| backends_tls(ctx, &join(base, "backends_tls"), b, protocol));
    let udp = udp(ctx, base, raw, protocol);
    Sections {
        sni,
        tls,
        backends_tls,
        udp,
    }
}

fn sni(ctx: &mut Ctx, base: &str, raw: &RawSni, protocol: Protocol) -> Sni {
    if protocol == Protocol::Udp {
        ctx.error(
            base,
            "sni is only supported with protocol \"tcp\" or \"tls\"",
        );
    }
    let matching = [
        ("exact", HostnameMatching::Exact),
        ("regexp", HostnameMatching::Regexp),
    ];
    let unexpected = [
        ("default", UnexpectedHostname::Default),
        ("reject", UnexpectedHostname::Reject),
        ("any", UnexpectedHostname::Any),
    ];
    let at = |key| join(base, key);
    Sni {
        read_timeout: duration_or(
            ctx,
            &at("read_timeout"),
            raw.read_timeout.as_ref(),
            Zero::Rejected,
            SNI_READ_TIMEOUT,
        ),
        hostname_matching_strategy: choice(
            ctx,
            &at("hostname_matching_strategy"),
            raw.hostname_matching_strategy.as_ref(),
            &matching,
            HostnameMatching::Exact,
        ),
        unexpected_hostname_strategy: choice(
            ctx,
            &at("unexpected_hostname_strategy"),
            raw.unexpected_hostname_strategy.as_ref(),
            &unexpected,
            UnexpectedHostname::Default,
        ),
    }
}

fn server_tls(ctx: &mut Ctx, base: &str, raw: Option<&RawTls>, protocol: Protocol) -> Option<Tls> {
    let Some(raw) = raw else {
        if protocol == Protocol::Tls {
            ctx.error(
                base,
                "required when protocol is \"tls\" (cert_path and key_path)",
            );
        }
        return None;
    };
    if protocol != Protocol::Tls {
        ctx.warn(base, "ignored unless protocol is \"tls\"");
    }
    let acme_hosts = raw.acme_hosts.clone().unwrap_or_default();
    if !acme_hosts.is_empty() {
        ctx.error(
            &join(base, "acme_hosts"),
            "ACME is not supported by betwixt (no public reachability on edge boxes); \
             use cert_path/key_path",
        );
    }
    let cert = cert_pair(
        ctx,
        base,
        raw.cert_path.as_ref(),
        raw.key_path.as_ref(),
        acme_hosts.is_empty(),
    );
    let (min_version, max_version) = versions(ctx, base, &raw.min_version, &raw.max_version);
    Some(Tls {
        cert,
        acme_hosts,
        min_version,
        max_version,
        ciphers: ciphers(ctx, base, &raw.ciphers),
        session_tickets: raw.session_tickets.unwrap_or(false),
    })
}

fn backends_tls(
    ctx: &mut Ctx,
    base: &str,
    raw: &RawBackendsTls,
    protocol: Protocol,
) -> BackendsTls {
    if protocol == Protocol::Udp {
        ctx.error(base, "backends_tls is not supported with protocol \"udp\"");
    }
    let client_cert = cert_pair(
        ctx,
        base,
        raw.cert_path.as_ref(),
        raw.key_path.as_ref(),
        false,
    );
    let (min_version, max_version) = versions(ctx, base, &raw.min_version, &raw.max_version);
    BackendsTls {
        ignore_verify: raw.ignore_verify.unwrap_or(false),
        root_ca_cert_path: raw
            .root_ca_cert_path
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        client_cert,
        min_version,
        max_version,
        ciphers: ciphers(ctx, base, &raw.ciphers),
        session_tickets: raw.session_tickets.unwrap_or(false),
    }
}

/// `min_version` / `max_version`: known names, min <= max.
fn versions(
    ctx: &mut Ctx,
    base: &str,
    min: &Option<String>,
    max: &Option<String>,
) -> (Option<String>, Option<String>) {
    let mut rank = |key: &str, value: &Option<String>| {
        let value = value.as_ref().filter(|v| !v.is_empty())?;
        let index = TLS_VERSIONS.iter().position(|v| v == value);
        if index.is_none() {
            ctx.error(&join(base, key), not_one_of(value, &TLS_VERSIONS));
        }
        index.map(|i| (i, value.clone()))
    };
    let min = rank("min_version", min);
    let max = rank("max_version", max);
    if let (Some((lo, _)), Some((hi, _))) = (&min, &max)
        && lo > hi
    {
        ctx.error(&join(base, "min_version"), "is newer than max_version");
    }
    // rustls implements TLS 1.2 and 1.3 only: a lower minimum means 1.2.
    if let Some((hi, v)) = &max
        && *hi < 2
    {
        ctx.error(
            &join(base, "max_version"),
            format!("{v:?} is not supported (rustls implements tls1.2 and tls1.3)"),
        );
    }
    (min.map(|m| m.1), max.map(|m| m.1))
}

fn udp(ctx: &mut Ctx, base: &str, raw: &RawServer, protocol: Protocol) -> Option<Udp> {
    let default = RawUdp::default();
    let section = raw.udp.as_ref();
    if protocol != Protocol::Udp {
        if section.is_some() {
            ctx.warn(&join(base, "udp"), "ignored unless protocol is \"udp\"");
        }
        return None;
    }
    if raw.max_connections.is_some_and(|n| n > 0) {
        ctx.warn(
            &join(base, "max_connections"),
            "ignored for protocol \"udp\" (udp.max_sessions caps sessions)",
        );
    }
    let section = section.unwrap_or(&default);
    let udp = Udp {
        max_requests: section.max_requests.unwrap_or(0),
        max_responses: section.max_responses.unwrap_or(0),
        transparent: section.transparent.unwrap_or(false),
        max_sessions: section.max_sessions.unwrap_or(UDP_MAX_SESSIONS),
    };
    if udp.max_sessions == 0 {
        ctx.error(&join(base, "udp.max_sessions"), "must be greater than 0");
    }
    let has_timeout = [&raw.client_idle_timeout, &raw.backend_idle_timeout]
        .into_iter()
        .flatten()
        .any(|t| crate::config::duration::parse(t).is_ok_and(|d| !d.is_zero()));
    if !has_timeout && udp.max_requests == 0 && udp.max_responses == 0 {
        ctx.error(
            base,
            "a udp server needs client_idle_timeout or backend_idle_timeout in its own \
             section, or udp.max_requests / udp.max_responses > 0 (else sessions never end)",
        );
    }
    Some(udp)
}

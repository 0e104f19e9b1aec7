//! Backend discovery: where the list of backends of a server comes from.
//!
//! `static` lists come straight from the config. Every other kind runs as
//! one task per server ([`runner::Supervisor`]): it fetches with the kind's
//! [`Fetcher`] (I/O in `exec.rs`, `srv.rs`, ...), decides with the pure
//! [`policy`] what to hand over (failpolicy, retry wait, fetch-once), and
//! sends each new list to the daemon, which swaps in a new plan (backends
//! that stay keep their state; removed ones with open connections stay
//! visible but unelectable until idle, see [`crate::state::Plan::prune`]).

pub mod consul;
pub mod docker;
pub mod exec;
#[cfg(test)]
mod fuzz_tests;
pub mod json;
pub mod lxd;
pub mod plaintext;
pub mod policy;
pub mod runner;
pub mod source;
pub mod srv;
pub mod static_list;
pub mod web;

use std::collections::BTreeMap;

use crate::config::{Discovery, DiscoveryKind};

/// One backend as a discovery source describes it (gobetween's fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// Host name or IP literal as written (`[::1]` keeps its brackets).
    pub host: String,
    pub port: u16,
    /// Default 1.
    pub weight: u32,
    /// Default 1; lower is preferred.
    pub priority: u32,
    /// 0 = unlimited.
    pub max_connections: u32,
    /// Empty when unset.
    pub sni: String,
}

impl BackendSpec {
    /// A backend with gobetween's defaults (weight 1, priority 1, no limit).
    /// A bare IPv6 literal host is put in brackets, as the line format has it.
    pub fn new(host: &str, port: u16, sni: &str) -> Self {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Self {
            host,
            port,
            weight: 1,
            priority: 1,
            max_connections: 0,
            sni: sni.to_string(),
        }
    }

    /// The host as an IP address (brackets removed), if it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.parse().ok()
    }

    /// The identity key, `"host:port"`, as gobetween prints it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `host` is an IP literal (IPv6 in brackets, with an optional `%zone`) or a DNS name: dot-separated
/// labels of letters, digits, `-` and `_`, 1-63 characters each, at most
/// 253 in all, with an optional final dot. Anything else (`"10.0.0.1 x"`,
/// a stray quote) would only fail later, at every connect.
pub fn check_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // A link-local address may name its interface: `[fe80::1%eth0]`.
        let (addr, zone) = inner.split_once('%').unwrap_or((inner, "x"));
        let zone_ok = !zone.is_empty()
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        return match addr.parse::<std::net::Ipv6Addr>() {
            Ok(_) if zone_ok => Ok(()),
            _ => Err(format!("`{host}` is not an IPv6 address")),
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "`{host}` is an IPv6 address without brackets; write `[{host}]`"
        ));
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok()
        || (name.len() <= 253 && name.split('.').all(label))
    {
        Ok(())
    } else {
        Err(format!("`{host}` is not an IP address or host name"))
    }
}

/// What one successful fetch found, and what it skipped: one message each
/// for the first [`policy::MAX_KEPT`], a count for the rest (a body of
/// millions of bad lines must not become millions of strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub specs: Vec<BackendSpec>,
    pub warnings: Vec<String>,
    /// Warnings past [`policy::MAX_KEPT`], counted only.
    pub more_warnings: usize,
}

impl Listing {
    /// Note a skipped entry; `why` is only formatted while it is kept.
    pub fn warn(&mut self, why: impl FnOnce() -> String) {
        policy::note(&mut self.warnings, &mut self.more_warnings, why);
    }
}

/// A configured dynamic source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetcher {
    Exec(exec::Exec),
    Srv(srv::Srv),
    Json(json::Json),
    Plaintext(plaintext::Plaintext),
    Consul(consul::Consul),
    Docker(docker::Docker),
    Lxd(lxd::Lxd),
}

impl Fetcher {
    /// The fetcher of a dynamic kind; `Ok(None)` for `static`; an error for
    /// a kind this build cannot run.
    pub fn of(d: &Discovery) -> Result<Option<Fetcher>, String> {
        let (kind, params) = match &d.kind {
            DiscoveryKind::Static { .. } => return Ok(None),
            DiscoveryKind::Exec { argv } => {
                return Ok(Some(Fetcher::Exec(exec::Exec { argv: argv.clone() })));
            }
            DiscoveryKind::Other { kind, params } => (kind.as_str(), params),
        };
        let p = |key: &str| param(params, key);
        Ok(Some(match kind {
            "srv" => Fetcher::Srv(srv::Srv {
                server: p("srv_lookup_server")?.to_string(),
                pattern: p("srv_lookup_pattern")?.to_string(),
                tcp: p("srv_dns_protocol")? == "tcp",
            }),
            "json" => Fetcher::Json(json::Json {
                endpoint: p("json_endpoint")?.to_string(),
                host: p("json_host_pattern")?.to_string(),
                port: p("json_port_pattern")?.to_string(),
                weight: p("json_weight_pattern")?.to_string(),
                priority: p("json_priority_pattern")?.to_string(),
                sni: p("json_sni_pattern")?.to_string(),
                max_connections: p("json_max_connections_pattern")?.to_string(),
            }),
            "plaintext" => Fetcher::Plaintext(plaintext::Plaintext {
                endpoint: p("plaintext_endpoint")?.to_string(),
                pattern: match params
                    .get("plaintext_regex_pattern")
                    .filter(|s| !s.is_empty())
                {
                    Some(re) => Some(regex::Regex::new(re).map_err(|e| e.to_string())?),
                    None => None,
                },
            }),
            "consul" => Fetcher::Consul(consul_of(params)?),
            "docker" => Fetcher::Docker(docker_of(params)?),
            "lxd" => Fetcher::Lxd(lxd_of(params)?),
            other => return Err(format!("discovery kind \"{other}\"")),
        }))
    }

    pub async fn fetch(&self) -> Result<Listing, String> {
        match self {
            Fetcher::Exec(e) => e.fetch().await,
            Fetcher::Srv(s) => s.fetch().await,
            Fetcher::Json(j) => j.fetch().await,
            Fetcher::Plaintext(p) => p.fetch().await,
            Fetcher::Consul(c) => c.fetch().await,
            Fetcher::Docker(d) => d.fetch().await,
            Fetcher::Lxd(l) => l.fetch().await,
        }
    }
}

fn consul_of(params: &BTreeMap<String, String>) -> Result<consul::Consul, String> {
    let opt = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let tls = opt("consul_tls_enabled").as_deref() == Some("true");
    let files = web::TlsFiles {
        ca: opt("consul_tls_cacert_path").map(Into::into),
        cert: opt("consul_tls_cert_path")
            .zip(opt("consul_tls_key_path"))
            .map(|(c, k)| (c.into(), k.into())),
        insecure: false,
    };
    let (https, host) = consul::split_host(param(params, "consul_host")?, tls)?;
    Ok(consul::Consul {
        base: format!("{}://{host}", if https { "https" } else { "http" }),
        service: param(params, "consul_service_name")?.to_string(),
        tag: opt("consul_service_tag"),
        passing_only: opt("consul_service_passing_only").as_deref() == Some("true"),
        datacenter: opt("consul_datacenter"),
        token: opt("consul_acl_token"),
        auth: opt("consul_auth_username")
            .map(|u| (u, opt("consul_auth_password").unwrap_or_default())),
        tls: files,
    })
}

fn docker_of(params: &BTreeMap<String, String>) -> Result<docker::Docker, String> {
    let opt = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let tls = opt("docker_tls_enabled").as_deref() == Some("true");
    let port = param(params, "docker_container_private_port")?;
    Ok(docker::Docker {
        endpoint: docker::Endpoint::parse(param(params, "docker_endpoint")?, tls)?,
        private_port: port
            .parse()
            .map_err(|_| format!("docker_container_private_port {port}"))?,
        label: opt("docker_container_label"),
        host_env_var: opt("docker_container_host_env_var"),
        tls: web::TlsFiles {
            ca: opt("docker_tls_cacert_path").map(Into::into),
            cert: opt("docker_tls_cert_path")
                .zip(opt("docker_tls_key_path"))
                .map(|(c, k)| (c.into(), k.into())),
            insecure: false,
        },
    })
}

fn lxd_of(params: &BTreeMap<String, String>) -> Result<lxd::Lxd, String> {
    let opt = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let dir = opt("lxd_config_directory").unwrap_or_else(|| format!("{home}/.config/lxc"));
    let accept = opt("lxd_accept_server_cert").as_deref() == Some("true");
    Ok(lxd::Lxd {
        address: lxd::Address::parse(param(params, "lxd_server_address")?, &dir, accept)?,
        label: opt("lxd_container_label_key")
            .map(|k| (k, opt("lxd_container_label_value").unwrap_or_default())),
        port: opt("lxd_container_port").and_then(|p| p.parse().ok()),
        port_key: opt("lxd_container_port_key"),
        interface: param(params, "lxd_container_interface")?.to_string(),
        interface_key: opt("lxd_container_interface_key"),
        ipv6: param(params, "lxd_container_address_type")? == "IPv6",
        sni_key: opt("lxd_container_sni_key"),
    })
}

fn param<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, String> {
    params
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("{key} is missing"))
}

/// A discovered list for a udp server without the backends named by a
/// host name (betwixt does not resolve names for udp); one message each.
pub fn udp_usable(specs: &[BackendSpec]) -> (Vec<BackendSpec>, Vec<String>) {
    let (kept, dropped): (Vec<BackendSpec>, Vec<BackendSpec>) =
        specs.iter().cloned().partition(|s| s.ip().is_some());
    let warnings = dropped
        .iter()
        .map(|s| {
            format!(
                "backend {} skipped: a udp backend needs an IP address",
                s.key()
            )
        })
        .collect();
    (kept, warnings)
}

/// The backends a server starts with: its static list, or none until the
/// first fetch of a dynamic kind.
pub fn initial_specs(d: &Discovery) -> &[BackendSpec] {
    match &d.kind {
        DiscoveryKind::Static { backends } => backends,
        DiscoveryKind::Exec { .. } | DiscoveryKind::Other { .. } => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_keeps_ip_backends_only() {
        let specs: Vec<BackendSpec> = ["127.0.0.1:53", "localhost:53", "[::1]:53"]
            .iter()
            .map(|l| static_list::parse_line(l).unwrap())
            .collect();
        let (kept, warnings) = udp_usable(&specs);
        let keys: Vec<String> = kept.iter().map(BackendSpec::key).collect();
        assert_eq!(keys, ["127.0.0.1:53", "[::1]:53"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("localhost:53"), "{warnings:?}");
    }
}

#[cfg(test)]
mod host_tests {
    use super::check_host;

    #[test]
    fn hosts_are_ip_literals_or_host_names() {
        for good in [
            "10.0.0.1",
            "[::1]",
            "[fe80::1%eth0]",
            "localhost",
            "web-1.example.com",
            "web-1.example.com.",
            "_srv.x",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1 evil",
            "\u{feff}10.0.0.1",
            "a..b",
            "[::1",
            "[not-v6]",
            "[fe80::1%]",
            "x\"y",
            "",
            &"a".repeat(64),
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        let bare = check_host("fd00::13").unwrap_err();
        assert!(bare.contains("write `[fd00::13]`"), "{bare}");
    }
}

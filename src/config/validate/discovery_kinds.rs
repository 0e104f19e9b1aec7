//! The keys of each non-static discovery kind (gobetween's §4.3 rules).

use super::discovery::{require, require_host_port, require_url};
use super::globals::cert_pair;
use super::values::{choice, host_port, regex_error};
use super::{Ctx, join};
use crate::config::raw::RawDiscovery;
use crate::config::secrets::url_for_logs;

pub fn srv(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    require_host_port(
        ctx,
        base,
        "srv_lookup_server",
        "srv",
        raw.srv_lookup_server.as_ref(),
    );
    require(
        ctx,
        base,
        "srv_lookup_pattern",
        "srv",
        raw.srv_lookup_pattern.as_ref(),
    );
    let protocols = [("udp", ()), ("tcp", ())];
    choice(
        ctx,
        &join(base, "srv_dns_protocol"),
        raw.srv_dns_protocol.as_ref(),
        &protocols,
        (),
    );
}

pub fn docker(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    let endpoint = raw.docker_endpoint.as_ref();
    if let Some(e) = require(ctx, base, "docker_endpoint", "docker", endpoint)
        && let Err(msg) = crate::discovery::docker::Endpoint::parse(e, false)
    {
        ctx.error(&join(base, "docker_endpoint"), msg);
    }
    match raw.docker_container_private_port {
        None => ctx.error(
            &join(base, "docker_container_private_port"),
            "required for kind \"docker\"",
        ),
        Some(0) => ctx.error(
            &join(base, "docker_container_private_port"),
            "must be 1-65535",
        ),
        Some(_) => {}
    }
    if raw.docker_tls_enabled == Some(true) {
        let (cert, key) = (
            raw.docker_tls_cert_path.as_ref(),
            raw.docker_tls_key_path.as_ref(),
        );
        tls_pair(ctx, base, "docker_tls", cert, key);
    }
}

pub fn json(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    require_url(
        ctx,
        base,
        "json_endpoint",
        "json",
        raw.json_endpoint.as_ref(),
    );
    let patterns = [
        ("json_host_pattern", &raw.json_host_pattern),
        ("json_port_pattern", &raw.json_port_pattern),
        ("json_weight_pattern", &raw.json_weight_pattern),
        ("json_priority_pattern", &raw.json_priority_pattern),
        ("json_sni_pattern", &raw.json_sni_pattern),
        (
            "json_max_connections_pattern",
            &raw.json_max_connections_pattern,
        ),
    ];
    for (key, pattern) in patterns {
        if let Some(p) = pattern.as_deref().filter(|p| !p.is_empty())
            && let Err(e) = crate::discovery::json::check_path(p)
        {
            ctx.error(&join(base, key), e);
        }
    }
}

pub fn plaintext(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    require_url(
        ctx,
        base,
        "plaintext_endpoint",
        "plaintext",
        raw.plaintext_endpoint.as_ref(),
    );
    let Some(pattern) = raw
        .plaintext_regex_pattern
        .as_ref()
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    let path = join(base, "plaintext_regex_pattern");
    match regex::Regex::new(pattern) {
        Err(e) => ctx.error(&path, format!("does not compile: {}", regex_error(&e))),
        Ok(re) => {
            let names: Vec<&str> = re.capture_names().flatten().collect();
            for group in ["host", "port"] {
                if !names.contains(&group) {
                    ctx.error(&path, format!("needs a named group (?P<{group}>...)"));
                }
            }
        }
    }
}

pub fn exec_discovery(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    let path = join(base, "exec_command");
    match raw.exec_command.as_deref() {
        None | Some([]) => ctx.error(
            &path,
            "required for kind \"exec\": an array, program first (e.g. [\"/bin/list\", \"arg\"])",
        ),
        Some([program, ..]) if program.is_empty() => ctx.error(&path, "the program is empty"),
        Some(_) => {}
    }
}

pub fn consul(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    let tls = raw.consul_tls_enabled == Some(true);
    if let Some(host) = require(ctx, base, "consul_host", "consul", raw.consul_host.as_ref())
        && let Err(e) = crate::discovery::consul::split_host(host, tls).and_then(|(_, rest)| {
            host_port(rest)
                .map_err(|_| format!("\"{}\": expected \"host:port\"", url_for_logs(host)))
        })
    {
        ctx.error(&join(base, "consul_host"), e);
    }
    require(
        ctx,
        base,
        "consul_service_name",
        "consul",
        raw.consul_service_name.as_ref(),
    );
    if raw.consul_service_datacenter.is_some() {
        let advice = if raw.consul_datacenter.is_some() {
            "obsolete key, ignored: consul_datacenter is set"
        } else {
            "obsolete key: use consul_datacenter (its value is used as consul_datacenter)"
        };
        ctx.warn(&join(base, "consul_service_datacenter"), advice);
    }
    if raw.consul_tls_enabled == Some(true) {
        let (cert, key) = (
            raw.consul_tls_cert_path.as_ref(),
            raw.consul_tls_key_path.as_ref(),
        );
        tls_pair(ctx, base, "consul_tls", cert, key);
    }
}

pub fn lxd(ctx: &mut Ctx, base: &str, raw: &RawDiscovery) {
    let address = raw.lxd_server_address.as_ref();
    if let Some(a) = require(ctx, base, "lxd_server_address", "lxd", address)
        && !(a.starts_with("unix:") || a.starts_with("https:"))
    {
        ctx.error(
            &join(base, "lxd_server_address"),
            format!(
                "\"{}\" must start with \"unix:\" or \"https:\"",
                url_for_logs(a)
            ),
        );
    }
    // gobetween's lxc-client remote management; betwixt reads existing
    // client certificates from lxd_config_directory instead.
    let inert = [
        (
            "lxd_generate_client_certs",
            raw.lxd_generate_client_certs.is_some(),
        ),
        (
            "lxd_server_remote_password",
            raw.lxd_server_remote_password.is_some(),
        ),
        (
            "lxd_server_remote_name",
            raw.lxd_server_remote_name.is_some(),
        ),
    ];
    for (key, set) in inert {
        if set {
            ctx.warn(
                &join(base, key),
                "ignored: betwixt neither generates client certificates nor adds \
                 remotes; it uses client.crt/client.key in lxd_config_directory",
            );
        }
    }
    let types = [("IPv4", ()), ("IPv6", ())];
    let path = join(base, "lxd_container_address_type");
    choice(
        ctx,
        &path,
        raw.lxd_container_address_type.as_ref(),
        &types,
        (),
    );
}

/// `PREFIX_cert_path` and `PREFIX_key_path`: both or neither.
fn tls_pair(ctx: &mut Ctx, base: &str, prefix: &str, cert: Option<&String>, key: Option<&String>) {
    let mut inner = Ctx::default();
    cert_pair(&mut inner, "", cert, key, false);
    for e in inner.errors {
        ctx.error(&join(base, &format!("{prefix}_{}", e.path)), e.message);
    }
}

//! The config file as written: gobetween's exact key names, every value
//! optional so "unset" is distinguishable from a default. Deserialized
//! from TOML or JSON (identical keys) and serializable back (for dumps:
//! unset keys are omitted).
//!
//! Unknown keys are not rejected here: the loader wraps the deserializer in
//! `serde_ignored`, and [`super::keys`] turns each ignored key into an error
//! or an obsolete-key warning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Declares a struct whose fields are all `Option<_>`, omitted from output
/// when `None` and defaulting to `None` when absent.
macro_rules! raw_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

raw_struct! {
    /// The whole file.
    RawConfig {
        logging: RawLogging,
        api: RawApi,
        metrics: RawMetrics,
        /// Accepted for compatibility, ignored with a warning.
        profiler: RawProfiler,
        defaults: RawDefaults,
        acme: RawAcme,
        servers: BTreeMap<String, RawServer>,
        /// `betwixt healthd`'s checks (new section).
        healthd: RawHealthd,
    }
}

raw_struct! {
    /// `[healthd]`: listener, singleflight and named checks for `betwixt healthd`.
    RawHealthd {
        listener: String,
        singleflight: bool,
        checks: BTreeMap<String, RawHealthdCheck>,
    }
}

raw_struct! {
    /// `[healthd.checks.NAME]`: what to check (`address`) and how (`healthcheck`).
    RawHealthdCheck {
        address: String,
        healthcheck: RawHealthcheck,
    }
}

raw_struct! {
    RawLogging { level: String, output: String, format: String, }
}

raw_struct! {
    RawApi {
        enabled: bool,
        bind: String,
        cors: bool,
        basic_auth: RawBasicAuth,
        tls: RawCertPaths,
        /// betwixt: where API-made servers, admin states and health are kept.
        state_file: String,
        /// betwixt: saved health older than this is ignored at start.
        state_max_age: String,
    }
}

raw_struct! {
    RawBasicAuth { login: String, password: String, }
}

raw_struct! {
    /// `cert_path` + `key_path` (used by `[api.tls]`).
    RawCertPaths { cert_path: String, key_path: String, }
}

raw_struct! {
    RawMetrics { enabled: bool, bind: String, }
}

raw_struct! {
    RawProfiler { enabled: bool, bind: String, }
}

raw_struct! {
    RawDefaults {
        max_connections: u32,
        client_idle_timeout: String,
        backend_idle_timeout: String,
        backend_connection_timeout: String,
        backend_connection_retries: u32,
        drain_timeout: String,
        /// New: concurrent `exec`/`script` health checks, process-wide.
        max_exec_checks: u32,
        /// New: see `proxy::tune`.
        low_rtt_tuning: bool,
        /// New: the in-kernel relay, see `proxy::sockmap`.
        sockmap: bool,
    }
}

raw_struct! {
    RawAcme { challenge: String, http_bind: String, cache_dir: String, }
}

raw_struct! {
    /// One `[servers.NAME]` section.
    RawServer {
        bind: String,
        protocol: String,
        balance: String,
        max_connections: u32,
        client_idle_timeout: String,
        backend_idle_timeout: String,
        backend_connection_timeout: String,
        backend_connection_retries: u32,
        drain_timeout: String,
        /// New: see `proxy::tune`.
        low_rtt_tuning: bool,
        /// New: the in-kernel relay, see `proxy::sockmap`.
        sockmap: bool,
        access: RawAccess,
        proxy_protocol: RawProxyProtocol,
        discovery: RawDiscovery,
        healthcheck: RawHealthcheck,
        sni: RawSni,
        tls: RawTls,
        backends_tls: RawBackendsTls,
        udp: RawUdp,
    }
}

raw_struct! {
    RawAccess { default: String, rules: Vec<String>, }
}

raw_struct! {
    RawProxyProtocol { version: String, }
}

raw_struct! {
    RawSni {
        read_timeout: String,
        hostname_matching_strategy: String,
        unexpected_hostname_strategy: String,
    }
}

raw_struct! {
    RawTls {
        cert_path: String,
        key_path: String,
        acme_hosts: Vec<String>,
        min_version: String,
        max_version: String,
        ciphers: Vec<String>,
        session_tickets: bool,
    }
}

raw_struct! {
    RawBackendsTls {
        ignore_verify: bool,
        root_ca_cert_path: String,
        cert_path: String,
        key_path: String,
        min_version: String,
        max_version: String,
        ciphers: Vec<String>,
        session_tickets: bool,
    }
}

raw_struct! {
    RawUdp {
        max_requests: u64,
        max_responses: u64,
        transparent: bool,
        max_sessions: u32,
    }
}

raw_struct! {
    /// `[servers.NAME.discovery]`: common keys, then each kind's keys
    /// (prefixed by the kind name, except static's `static_list`).
    RawDiscovery {
        kind: String,
        interval: String,
        timeout: String,
        failpolicy: String,
        static_list: Vec<String>,
        srv_lookup_server: String,
        srv_lookup_pattern: String,
        srv_dns_protocol: String,
        docker_endpoint: String,
        docker_container_private_port: u16,
        docker_container_label: String,
        docker_container_host_env_var: String,
        docker_tls_enabled: bool,
        docker_tls_cert_path: String,
        docker_tls_key_path: String,
        docker_tls_cacert_path: String,
        json_endpoint: String,
        json_host_pattern: String,
        json_port_pattern: String,
        json_weight_pattern: String,
        json_priority_pattern: String,
        json_sni_pattern: String,
        json_max_connections_pattern: String,
        exec_command: Vec<String>,
        plaintext_endpoint: String,
        plaintext_regex_pattern: String,
        consul_host: String,
        consul_service_name: String,
        consul_service_tag: String,
        consul_service_passing_only: bool,
        consul_datacenter: String,
        /// Obsolete spelling from gobetween's sample config (warning).
        consul_service_datacenter: String,
        consul_auth_username: String,
        consul_auth_password: String,
        consul_acl_token: String,
        consul_tls_enabled: bool,
        consul_tls_cert_path: String,
        consul_tls_key_path: String,
        consul_tls_cacert_path: String,
        lxd_server_address: String,
        lxd_server_remote_name: String,
        lxd_server_remote_password: String,
        lxd_config_directory: String,
        lxd_generate_client_certs: bool,
        lxd_accept_server_cert: bool,
        lxd_container_label_key: String,
        lxd_container_label_value: String,
        lxd_container_port: u16,
        lxd_container_port_key: String,
        lxd_container_interface: String,
        lxd_container_interface_key: String,
        lxd_container_sni_key: String,
        lxd_container_address_type: String,
    }
}

raw_struct! {
    /// `[servers.NAME.healthcheck]`: common keys, then each kind's keys.
    RawHealthcheck {
        kind: String,
        interval: String,
        timeout: String,
        port: u16,
        fails: i64,
        passes: i64,
        initial_status: String,
        fast_interval: String,
        down_interval: String,
        jitter: u8,
        score_window: u32,
        on_down: String,
        probe_protocol: String,
        probe_send: String,
        probe_recv: String,
        probe_strategy: String,
        probe_recv_len: u32,
        probe_tls_insecure: bool,
        exec_command: String,
        exec_expected_positive_output: String,
        exec_expected_negative_output: String,
        script_path: String,
        script_content: String,
        path: String,
        method: String,
        headers: BTreeMap<String, String>,
        host: String,
        tls: bool,
        insecure_skip_verify: bool,
        expected_status: StatusSpec,
        contains: String,
        icmp_count: u32,
        webhook_url: String,
        webhook_method: String,
    }
}

/// `expected_status`: `200`, `"200-399"`, or a list of those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a status code, a range like \"200-399\", or a list of them"
)]
pub enum StatusSpec {
    One(StatusItem),
    List(Vec<StatusItem>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a status code or a range like \"200-399\"")]
pub enum StatusItem {
    Code(i64),
    Text(String),
}

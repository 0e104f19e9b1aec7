//! What this build refuses to run, and TLS setups built before servers start.

use super::*;

/// Valid settings this build cannot run yet: starting with them would
/// silently do something else, so they are errors.
pub fn unsupported(cfg: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if cfg!(not(feature = "tls")) && cfg.api.enabled && cfg.api.tls.is_some() {
        out.push(ConfigError {
            path: "api.tls".into(),
            message: "HTTPS for the API needs the \"tls\" feature, which this build does not have"
                .into(),
        });
    }
    for (name, s) in &cfg.servers {
        let mut no = |key: &str, what: String| {
            out.push(ConfigError {
                path: format!("servers.{name}.{key}"),
                message: format!("{what} is not supported by this build yet"),
            })
        };
        if cfg!(not(feature = "tls")) {
            if s.protocol == Protocol::Tls {
                no("protocol", "protocol tls (feature \"tls\")".into());
            }
            if s.backends_tls.is_some() {
                no("backends_tls", "backends_tls (feature \"tls\")".into());
            }
        }
        if let Err(what) = Fetcher::of(&s.discovery) {
            no("discovery.kind", what);
        }
        if !health_supported(&s.healthcheck.check) {
            no(
                "healthcheck.kind",
                format!("health check kind \"{}\"", s.healthcheck.kind),
            );
        }
        if cfg!(not(feature = "ebpf")) && s.sockmap {
            out.push(ConfigError {
                path: format!("servers.{name}.sockmap"),
                message: "the sockmap fast path needs the \"ebpf\" feature, which this build \
                          does not have"
                    .into(),
            });
        }
        if let Some((key, what)) = health_tls(&s.healthcheck.check)
            && !cfg!(feature = "tls")
        {
            out.push(ConfigError {
                path: format!("servers.{name}.healthcheck.{key}"),
                message: format!("{what} needs TLS, which this build lacks (feature \"tls\")"),
            });
        }
    }
    out
}

/// The key and setting of a check that needs TLS.
pub(super) fn health_tls(check: &Check) -> Option<(&'static str, &'static str)> {
    match check {
        Check::Probe(p) if p.protocol == ProbeProtocol::Tls => {
            Some(("probe_protocol", "probe_protocol \"tls\""))
        }
        Check::Http(h) if h.tls => Some(("tls", "tls = true")),
        Check::Webhook { url, .. }
            if url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://")) =>
        {
            Some(("webhook_url", "an https webhook_url"))
        }
        _ => None,
    }
}

pub(super) fn health_supported(check: &Check) -> bool {
    matches!(
        check,
        Check::None
            | Check::Ping
            | Check::Probe(_)
            | Check::Http(_)
            | Check::Webhook { .. }
            | Check::Exec { .. }
            | Check::Script(_)
            | Check::Icmp { .. }
    )
}

/// What `-t` checks beyond the config text: the certificate and key files
/// of every server and of `[api.tls]`, read now as a start would read them,
/// and whether the log file can be opened. One `path: message` line per
/// problem.
pub fn file_errors(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = match build_edges(cfg) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|(_, e)| e).collect(),
    };
    out.extend(crate::log::check_output(&cfg.logging).err());
    #[cfg(feature = "tls")]
    if cfg.api.enabled
        && let Some(pair) = &cfg.api.tls
        && let Err(e) = crate::api::tls::server_config(pair)
    {
        out.push(format!("api.tls: {e}"));
    }
    out
}

/// TLS configurations of every tcp/tls server, certificate files read now;
/// the errors name the server.
pub(super) fn build_edges(
    cfg: &Config,
) -> Result<BTreeMap<String, Contexts>, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, s) in &cfg.servers {
        if s.protocol == Protocol::Udp {
            continue;
        }
        match Contexts::build(s) {
            Ok(c) => {
                out.insert(name.clone(), c);
            }
            Err(e) => errors.push((name.clone(), format!("servers.{name}.{e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(hc: &str) -> Vec<String> {
        let text = format!(
            "[servers.web]\nbind = \"127.0.0.1:8080\"\n[servers.web.discovery]\nkind = \"static\"\n\
             static_list = [\"127.0.0.1:80\"]\n[servers.web.healthcheck]\ninterval = \"1s\"\n{hc}\n"
        );
        match config::parse(&text, config::Format::Toml) {
            Ok(l) => super::source::lines(unsupported(&l.config)),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn sockmap_is_refused_without_the_ebpf_feature() {
        let text = "[servers.web]\nbind = \"127.0.0.1:8080\"\nsockmap = true\n\
                    [servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:80\"]\n";
        let loaded = config::parse(text, config::Format::Toml).unwrap();
        let errors = super::source::lines(unsupported(&loaded.config));
        if cfg!(feature = "ebpf") {
            assert!(errors.is_empty(), "{errors:?}");
        } else {
            assert!(
                errors[0].starts_with("servers.web.sockmap: ")
                    && errors[0].contains("\"ebpf\" feature"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn api_tls_runs_when_tls_is_built_in() {
        let text = "[api]\nenabled = true\n[api.tls]\ncert_path = \"c\"\nkey_path = \"k\"\n";
        let loaded = config::parse(text, config::Format::Toml).unwrap();
        let errors = super::source::lines(unsupported(&loaded.config));
        if cfg!(feature = "tls") {
            assert!(errors.is_empty(), "{errors:?}");
        } else {
            assert!(
                errors[0].starts_with("api.tls: ") && errors[0].contains("\"tls\" feature"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn http_webhook_and_tls_checks_run_when_tls_is_built_in() {
        let plain = [
            "kind = \"http\"",
            "kind = \"webhook\"\nwebhook_url = \"http://127.0.0.1:9/x\"",
        ];
        for hc in plain {
            assert!(refused(hc).is_empty(), "{hc}: {:?}", refused(hc));
        }
        let tls = [
            ("kind = \"http\"\ntls = true", "healthcheck.tls"),
            (
                "kind = \"webhook\"\nwebhook_url = \"https://127.0.0.1/\"",
                "healthcheck.webhook_url",
            ),
            (
                "kind = \"probe\"\nprobe_protocol = \"tls\"\nprobe_send = \"a\"\nprobe_recv = \"b\"",
                "healthcheck.probe_protocol",
            ),
        ];
        for (hc, key) in tls {
            let errors = refused(hc);
            if cfg!(feature = "tls") {
                assert!(errors.is_empty(), "{hc}: {errors:?}");
            } else {
                let want = format!("servers.web.{key}: ");
                assert!(
                    errors
                        .iter()
                        .any(|e| e.starts_with(&want) && e.contains("feature \"tls\"")),
                    "{errors:?}"
                );
            }
        }
    }
}

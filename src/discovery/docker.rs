//! `docker`: list running containers (`GET /containers/json`, optionally
//! filtered by `docker_container_label`) from `docker_endpoint` — a unix
//! socket (`unix:///var/run/docker.sock`) or `http://`/`tcp://HOST:PORT`
//! (https with `docker_tls_*` client certificates). For each published
//! mapping of `docker_container_private_port`: port = the public port, host
//! = the container's `docker_container_host_env_var` value if set, else the
//! mapping's IP unless it is a wildcard, else the endpoint's host
//! (127.0.0.1 for a unix socket); sni = the container's `sni` label. A
//! matching container that publishes no port is logged and skipped
//! (gobetween yields host "" port 0).

use std::path::PathBuf;

use serde_json::Value;

use super::consul::escape;
use super::json::each_element;
use super::web::{TlsFiles, get, get_at};
use super::{BackendSpec, Listing};
use crate::http::Dial;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docker {
    pub endpoint: Endpoint,
    pub private_port: u16,
    pub label: Option<String>,
    pub host_env_var: Option<String>,
    pub tls: TlsFiles,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port` over http (or https with `tls`).
    Tcp {
        host: String,
        port: u16,
        https: bool,
    },
}

impl Endpoint {
    pub fn parse(text: &str, https: bool) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let rest = ["tcp://", "http://", "https://"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .ok_or_else(|| {
                let shown = crate::config::secrets::url_for_logs(text);
                format!("docker_endpoint \"{shown}\": use unix://PATH or tcp://HOST:PORT")
            })?;
        let authority = rest.split('/').next().unwrap_or_default();
        let url = crate::http::Url::parse(&format!("http://{authority}"))?;
        Ok(Endpoint::Tcp {
            host: url.host,
            port: url.port,
            https: https || text.starts_with("https://"),
        })
    }

    /// The host used when a mapping binds every address.
    fn host(&self) -> String {
        match self {
            Endpoint::Unix(_) => "127.0.0.1".into(),
            Endpoint::Tcp { host, .. } if host.contains(':') => format!("[{host}]"),
            Endpoint::Tcp { host, .. } => host.clone(),
        }
    }
}

impl Docker {
    /// `/containers/json` with the running and label filters.
    pub fn list_target(&self) -> String {
        let mut filters = serde_json::json!({ "status": ["running"] });
        if let Some(label) = &self.label {
            filters["label"] = serde_json::json!([label]);
        }
        format!("/containers/json?filters={}", escape(&filters.to_string()))
    }

    async fn get(&self, target: &str) -> Result<Vec<u8>, String> {
        match &self.endpoint {
            Endpoint::Unix(path) => get_at(&Dial::Unix(path.clone()), None, "docker", target).await,
            Endpoint::Tcp { host, port, https } => {
                let scheme = if *https { "https" } else { "http" };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                get(&format!("{scheme}://{host}:{port}{target}"), &[], &self.tls).await
            }
        }
    }

    pub async fn fetch(&self) -> Result<Listing, String> {
        let body = self.get(&self.list_target()).await?;
        let containers = self.containers(&body)?;
        drop(body);
        let mut envs = Vec::with_capacity(containers.len());
        for c in &containers {
            envs.push(match (&self.host_env_var, &c.id) {
                (Some(var), Some(id)) => {
                    let body = self
                        .get(&format!("/containers/{}/json", escape(id)))
                        .await?;
                    let inspect: Value = serde_json::from_slice(&body)
                        .map_err(|e| format!("invalid JSON from docker: {e}"))?;
                    env_value(&inspect, var)
                }
                _ => None,
            });
        }
        Ok(self.parse(&containers, &envs))
    }

    /// What discovery needs of each container in a `/containers/json`
    /// answer, read one container at a time (pure): the answer never
    /// exists as one `Value` tree, which costs many times its text.
    pub fn containers(&self, body: &[u8]) -> Result<Vec<Container>, String> {
        let mut list = Vec::new();
        let not_array = "docker: expected a JSON array of containers";
        each_element(body, not_array, |_, c| {
            list.push(self.container(&c));
            Ok(())
        })
        .map_err(|e| match e.strip_prefix("invalid JSON: ") {
            Some(e) => format!("invalid JSON from docker: {e}"),
            None => e,
        })?;
        Ok(list)
    }

    /// One container of the list, with only the mappings of
    /// `docker_container_private_port` (pure).
    pub fn container(&self, c: &Value) -> Container {
        let name = c["Names"][0].as_str().unwrap_or("?");
        let mappings = c["Ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["PrivatePort"].as_u64() == Some(u64::from(self.private_port)))
            .filter_map(|p| {
                let port = p["PublicPort"].as_u64()?;
                let port = u16::try_from(port).ok().filter(|&p| p > 0);
                Some((p["IP"].as_str().unwrap_or_default().to_string(), port))
            })
            .collect();
        Container {
            id: c["Id"].as_str().map(String::from),
            name: name.trim_start_matches('/').to_string(),
            sni: c["Labels"]["sni"].as_str().unwrap_or_default().to_string(),
            mappings,
        }
    }

    /// Backends from the containers and each container's env value (pure).
    pub fn parse(&self, containers: &[Container], envs: &[Option<String>]) -> Listing {
        let mut listing = Listing::default();
        for (i, c) in containers.iter().enumerate() {
            // A public port of 0 means "not published"; one above 65535 is
            // not a port: both are left out, as a missing one is.
            if !c.mappings.iter().any(|(_, p)| p.is_some()) {
                listing.warn(|| {
                    format!(
                        "container {} publishes no host port for private port {}; skipped",
                        c.name, self.private_port
                    )
                });
                continue;
            }
            for (ip, port) in &c.mappings {
                let Some(port) = *port else { continue };
                let host = match envs.get(i).cloned().flatten() {
                    Some(h) => h,
                    None if ip.is_empty() || ip == "0.0.0.0" || ip == "::" => self.endpoint.host(),
                    None => ip.clone(),
                };
                listing.specs.push(BackendSpec::new(&host, port, &c.sni));
            }
        }
        listing
    }
}

/// What discovery keeps of one listed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: Option<String>,
    pub name: String,
    /// The `sni` label, or empty.
    pub sni: String,
    /// `(IP, public port)` of each mapping of the private port; `None` for
    /// a mapping with no usable public port.
    pub mappings: Vec<(String, Option<u16>)>,
}

/// `VAR`'s value in an inspect answer's `Config.Env` (`["K=V", ...]`).
pub fn env_value(inspect: &Value, var: &str) -> Option<String> {
    inspect["Config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|kv| kv.strip_prefix(var)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker() -> Docker {
        Docker {
            endpoint: Endpoint::parse("unix:///var/run/docker.sock", false).unwrap(),
            private_port: 80,
            label: Some("lb=web".into()),
            host_env_var: None,
            tls: TlsFiles::default(),
        }
    }

    #[test]
    fn endpoints_and_filters() {
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2376", true).unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 2376,
                https: true
            }
        );
        assert!(Endpoint::parse("ftp://x", false).is_err());
        let t = docker().list_target();
        assert!(t.starts_with("/containers/json?filters=%7B"), "{t}");
        assert!(t.contains("lb%3Dweb"), "{t}");
    }

    #[test]
    fn mappings_env_and_unpublished() {
        let list = docker().containers(
            br#"[
          {"Id":"1","Names":["/a"],"Labels":{"sni":"a.test"},"Ports":[
             {"IP":"127.0.0.1","PrivatePort":80,"PublicPort":32768,"Type":"tcp"},
             {"IP":"127.0.0.1","PrivatePort":443,"PublicPort":32769,"Type":"tcp"}]},
          {"Id":"2","Names":["/b"],"Labels":{},"Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":32770,"Type":"tcp"}]},
          {"Id":"3","Names":["/c"],"Labels":{},"Ports":[{"PrivatePort":80,"Type":"tcp"}]},
          {"Id":"4","Names":["/d"],"Labels":{},"Ports":[{"IP":"::","PrivatePort":80,"PublicPort":32771,"Type":"tcp"}]}
        ]"#,
        )
        .unwrap();
        let envs = vec![None, None, None, Some("10.9.9.9".to_string())];
        let l = docker().parse(&list, &envs);
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(
            keys,
            ["127.0.0.1:32768", "127.0.0.1:32770", "10.9.9.9:32771"]
        );
        assert_eq!(l.specs[0].sni, "a.test");
        assert_eq!(l.warnings.len(), 1);
        assert!(
            l.warnings[0].contains("container c publishes no host port"),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn answers_that_are_not_a_container_list_are_clear_errors() {
        let e = docker().containers(br#"{"message":"client version too old"}"#);
        assert_eq!(
            e.unwrap_err(),
            "docker: expected a JSON array of containers"
        );
        let e = docker().containers(br#"[{"Id":"1""#).unwrap_err();
        assert!(e.starts_with("invalid JSON from docker: "), "{e}");
        // A public port that is no port is as good as none published.
        let list = docker()
            .containers(br#"[{"Names":["/x"],"Ports":[{"PrivatePort":80,"PublicPort":70000}]}]"#)
            .unwrap();
        let l = docker().parse(&list, &[None]);
        assert!(l.specs.is_empty());
        assert!(l.warnings[0].contains("container x publishes no host port"));
    }

    #[test]
    fn env_lookup() {
        let v: Value =
            serde_json::from_str(r#"{"Config":{"Env":["A=1","HOST_IP=127.0.0.5","HOST=x"]}}"#)
                .unwrap();
        assert_eq!(env_value(&v, "HOST_IP").as_deref(), Some("127.0.0.5"));
        assert_eq!(env_value(&v, "HOST").as_deref(), Some("x"));
        assert_eq!(env_value(&v, "NOPE"), None);
    }
}

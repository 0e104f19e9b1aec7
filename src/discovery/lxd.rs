//! `lxd`: list containers with `GET /1.0/containers?recursion=2` from
//! `lxd_server_address` (`unix:PATH` or `https://HOST:PORT` with the client
//! certificate `client.crt`/`client.key` of `lxd_config_directory`). Only
//! running containers, optionally those whose config key
//! `lxd_container_label_key` equals `lxd_container_label_value`. Port =
//! `lxd_container_port`, or the value of config key
//! `lxd_container_port_key`; host = the first global address of the
//! chosen family (`IPv4`/`IPv6`, bracketed) on `lxd_container_interface`
//! (or the interface named by config key `lxd_container_interface_key`);
//! sni = the value of config key `lxd_container_sni_key`.

use std::path::PathBuf;

use serde_json::Value;

use super::web::{TlsFiles, get, get_at};
use super::{BackendSpec, Listing};
use crate::http::Dial;

const TARGET: &str = "/1.0/containers?recursion=2";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lxd {
    pub address: Address,
    pub label: Option<(String, String)>,
    pub port: Option<u16>,
    pub port_key: Option<String>,
    pub interface: String,
    pub interface_key: Option<String>,
    pub ipv6: bool,
    pub sni_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Https { base: String, tls: TlsFiles },
}

impl Address {
    pub fn parse(text: &str, config_dir: &str, accept_cert: bool) -> Result<Address, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.trim_start_matches("//");
            let path = if path.is_empty() {
                "/var/lib/lxd/unix.socket"
            } else {
                path
            };
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if text.starts_with("https:") {
            let dir = PathBuf::from(config_dir);
            return Ok(Address::Https {
                base: text.trim_end_matches('/').to_string(),
                tls: TlsFiles {
                    ca: None,
                    cert: Some((dir.join("client.crt"), dir.join("client.key"))),
                    insecure: accept_cert,
                },
            });
        }
        Err(format!(
            "lxd_server_address \"{text}\" must start with unix: or https:"
        ))
    }
}

impl Lxd {
    pub async fn fetch(&self) -> Result<Listing, String> {
        let body = match &self.address {
            Address::Unix(path) => get_at(&Dial::Unix(path.clone()), None, "lxd", TARGET).await?,
            Address::Https { base, tls } => get(&format!("{base}{TARGET}"), &[], tls).await?,
        };
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| format!("invalid JSON from lxd: {e}"))?;
        self.parse(&value)
    }

    /// Backends from a `/1.0/containers?recursion=2` answer (pure).
    pub fn parse(&self, answer: &Value) -> Result<Listing, String> {
        if answer["type"].as_str() == Some("error") {
            return Err(format!(
                "lxd: {}",
                answer["error"].as_str().unwrap_or("error")
            ));
        }
        let Some(items) = answer["metadata"].as_array() else {
            return Err("lxd: the answer has no metadata list".into());
        };
        let mut listing = Listing::default();
        for c in items {
            if c["status"].as_str() != Some("Running") {
                continue;
            }
            let name = c["name"].as_str().unwrap_or("?");
            let config = |key: &str| {
                c["expanded_config"][key]
                    .as_str()
                    .or_else(|| c["config"][key].as_str())
                    .map(String::from)
            };
            if let Some((key, value)) = &self.label {
                match config(key) {
                    Some(v) if value.is_empty() || v == *value => {}
                    _ => continue,
                }
            }
            match self.backend(c, &config) {
                Ok(spec) => listing.specs.push(spec),
                Err(e) => listing.warn(|| format!("container {name}: {e}; skipped")),
            }
        }
        Ok(listing)
    }

    fn backend(
        &self,
        c: &Value,
        config: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BackendSpec, String> {
        let port = match (&self.port_key, self.port) {
            (Some(key), _) => {
                let v = config(key).ok_or_else(|| format!("no config key {key}"))?;
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{key} = \"{v}\" is not a port"))?
            }
            (None, Some(p)) => p,
            (None, None) => return Err("no lxd_container_port or lxd_container_port_key".into()),
        };
        let interface = match &self.interface_key {
            Some(key) => config(key).unwrap_or_else(|| self.interface.clone()),
            None => self.interface.clone(),
        };
        let family = if self.ipv6 { "inet6" } else { "inet" };
        let host = c["state"]["network"][interface.as_str()]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["family"].as_str() == Some(family))
            .filter(|a| a["scope"].as_str().is_none_or(|s| s == "global"))
            .find_map(|a| a["address"].as_str())
            .ok_or_else(|| format!("no {family} address on {interface}"))?;
        let sni = self.sni_key.as_deref().and_then(config).unwrap_or_default();
        Ok(BackendSpec::new(host, port, &sni))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lxd() -> Lxd {
        Lxd {
            address: Address::parse("unix:/var/lib/lxd/unix.socket", "", false).unwrap(),
            label: Some(("user.lb".into(), "web".into())),
            port: Some(80),
            port_key: None,
            interface: "eth0".into(),
            interface_key: None,
            ipv6: false,
            sni_key: Some("user.sni".into()),
        }
    }

    fn answer() -> Value {
        serde_json::from_str(
            r#"{"type":"sync","status":"Success","status_code":200,"metadata":[
          {"name":"a","status":"Running","config":{"user.lb":"web","user.sni":"a.test","user.port":"8080"},
           "state":{"network":{"eth0":{"addresses":[
             {"family":"inet6","address":"fe80::1","scope":"link"},
             {"family":"inet","address":"198.18.5.10","scope":"global"},
             {"family":"inet6","address":"2001:db8::10","scope":"global"}]}}}},
          {"name":"b","status":"Stopped","config":{"user.lb":"web"},"state":null},
          {"name":"c","status":"Running","config":{"user.lb":"other"},"state":{}},
          {"name":"d","status":"Running","config":{"user.lb":"web"},"state":{"network":{}}}
        ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn running_labelled_containers() {
        let l = lxd().parse(&answer()).unwrap();
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["198.18.5.10:80"]);
        assert_eq!(l.specs[0].sni, "a.test");
        assert_eq!(l.warnings.len(), 1, "d has no address: {:?}", l.warnings);
        let mut v6 = lxd();
        v6.ipv6 = true;
        v6.port_key = Some("user.port".into());
        let l = v6.parse(&answer()).unwrap();
        assert_eq!(l.specs[0].key(), "[2001:db8::10]:8080");
        let err: Value =
            serde_json::from_str(r#"{"type":"error","error":"not authorized","error_code":403}"#)
                .unwrap();
        assert!(lxd().parse(&err).unwrap_err().contains("not authorized"));
    }
}

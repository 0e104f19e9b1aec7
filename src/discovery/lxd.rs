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

use std::fmt;
use std::path::PathBuf;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
        self.parse(&body)
    }

    /// Backends from a `/1.0/containers?recursion=2` answer (pure). The
    /// containers of `metadata` are read one at a time (see [`answer`]).
    pub fn parse(&self, body: &[u8]) -> Result<Listing, String> {
        let mut listing = Listing::default();
        let head = answer(body, |c| self.container(&c, &mut listing))?;
        if head.kind.as_deref() == Some("error") {
            return Err(format!("lxd: {}", head.error.as_deref().unwrap_or("error")));
        }
        if !head.listed {
            return Err("lxd: the answer has no metadata list".into());
        }
        Ok(listing)
    }

    /// Add one container of the list to `listing`, if it runs and has the
    /// label.
    fn container(&self, c: &Value, listing: &mut Listing) {
        if c["status"].as_str() != Some("Running") {
            return;
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
                _ => return,
            }
        }
        match self.backend(c, &config) {
            Ok(spec) => listing.specs.push(spec),
            Err(e) => listing.warn(|| format!("container {name}: {e}; skipped")),
        }
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

/// The members of an LXD answer besides its list.
#[derive(Default)]
struct Head {
    kind: Option<String>,
    error: Option<String>,
    /// `metadata` was an array.
    listed: bool,
}

/// Read an LXD answer object, handing each element of its `metadata` array
/// to `each` as it is read: the list never exists as one `Value` tree
/// (`recursion=2` lists every container's whole state, and a tree costs
/// many times its text).
fn answer(body: &[u8], mut each: impl FnMut(Value)) -> Result<Head, String> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("lxd: the answer is not a JSON object".into());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(Answer { each: &mut each })
        .and_then(|head| de.end().map(|()| head))
        .map_err(|e| format!("invalid JSON from lxd: {e}"))
}

struct Answer<'a, F> {
    each: &'a mut F,
}

impl<'de, F: FnMut(Value)> Visitor<'de> for Answer<'_, F> {
    type Value = Head;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an LXD answer object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        let mut head = Head::default();
        let text = |v: Value| v.as_str().map(String::from);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => head.kind = text(map.next_value()?),
                "error" => head.error = text(map.next_value()?),
                "metadata" => head.listed |= map.next_value_seed(Metadata { each: self.each })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

/// `metadata`: each element of an array goes to `each`; anything else
/// (an error answer's `null` or `{}`) is skipped and reported as no list.
struct Metadata<'a, F> {
    each: &'a mut F,
}

impl<'de, F: FnMut(Value)> DeserializeSeed<'de> for Metadata<'_, F> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Value)> Visitor<'de> for Metadata<'_, F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of containers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(c) = seq.next_element::<Value>()? {
            (self.each)(c);
        }
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
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

    fn answer() -> &'static [u8] {
        br#"{"type":"sync","status":"Success","status_code":200,"metadata":[
          {"name":"a","status":"Running","config":{"user.lb":"web","user.sni":"a.test","user.port":"8080"},
           "state":{"network":{"eth0":{"addresses":[
             {"family":"inet6","address":"fe80::1","scope":"link"},
             {"family":"inet","address":"198.18.5.10","scope":"global"},
             {"family":"inet6","address":"2001:db8::10","scope":"global"}]}}}},
          {"name":"b","status":"Stopped","config":{"user.lb":"web"},"state":null},
          {"name":"c","status":"Running","config":{"user.lb":"other"},"state":{}},
          {"name":"d","status":"Running","config":{"user.lb":"web"},"state":{"network":{}}}
        ]}"#
    }

    #[test]
    fn running_labelled_containers() {
        let l = lxd().parse(answer()).unwrap();
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["198.18.5.10:80"]);
        assert_eq!(l.specs[0].sni, "a.test");
        assert_eq!(l.warnings.len(), 1, "d has no address: {:?}", l.warnings);
        let mut v6 = lxd();
        v6.ipv6 = true;
        v6.port_key = Some("user.port".into());
        let l = v6.parse(answer()).unwrap();
        assert_eq!(l.specs[0].key(), "[2001:db8::10]:8080");
        let err = br#"{"type":"error","error":"not authorized","error_code":403,"metadata":null}"#;
        assert!(lxd().parse(err).unwrap_err().contains("not authorized"));
    }

    #[test]
    fn answers_without_a_list_are_clear_errors() {
        let e = lxd()
            .parse(br#"{"type":"sync","metadata":{}}"#)
            .unwrap_err();
        assert_eq!(e, "lxd: the answer has no metadata list");
        assert_eq!(
            lxd().parse(b"[]").unwrap_err(),
            "lxd: the answer is not a JSON object"
        );
        let e = lxd().parse(br#"{"metadata":[{"#).unwrap_err();
        assert!(e.starts_with("invalid JSON from lxd: "), "{e}");
    }
}

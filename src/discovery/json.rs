//! `json`: GET `json_endpoint`; the body is a top-level array, and each
//! `json_*_pattern` is a dotted path into each element (`address.ip`,
//! `ports[0]`, `a.b[1].c`; a leading `.` is allowed). host and port are
//! required in every element (a missing one fails the fetch, as in
//! gobetween); weight, priority, max_connections and sni are optional.

use std::fmt;

use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use super::policy::cut;
use super::web::{TlsFiles, get};
use super::{BackendSpec, Listing};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json {
    pub endpoint: String,
    pub host: String,
    pub port: String,
    pub weight: String,
    pub priority: String,
    pub sni: String,
    pub max_connections: String,
}

impl Json {
    pub async fn fetch(&self) -> Result<Listing, String> {
        let body = get(&self.endpoint, &[], &TlsFiles::default()).await?;
        let specs = self.parse(&body)?;
        Ok(Listing {
            specs,
            ..Listing::default()
        })
    }

    /// Parse a body (pure). Element by element: the first bad one fails
    /// the fetch.
    pub fn parse(&self, body: &[u8]) -> Result<Vec<BackendSpec>, String> {
        let mut specs = Vec::new();
        each_element(body, "expected a top-level JSON array", |i, item| {
            let spec = self
                .element(&item)
                .map_err(|e| format!("element {i}: {e}"))?;
            specs.push(spec);
            Ok(())
        })?;
        Ok(specs)
    }

    fn element(&self, item: &Value) -> Result<BackendSpec, String> {
        let host = match lookup(item, &self.host)? {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(other) => return Err(format!("{}: not a host: {}", self.host, show(other))),
            None => return Err(format!("no {}", self.host)),
        };
        let port = match lookup(item, &self.port)? {
            Some(v) => number(v, &self.port).and_then(|p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{}: {p} is not a port", self.port))
            })?,
            None => return Err(format!("no {}", self.port)),
        };
        let opt = |path: &str, default: u32| -> Result<u32, String> {
            match lookup(item, path)? {
                None | Some(Value::Null) => Ok(default),
                Some(v) => number(v, path).and_then(|n| {
                    u32::try_from(n).map_err(|_| format!("{path}: {n} is too large"))
                }),
            }
        };
        let sni = match lookup(item, &self.sni)? {
            Some(Value::String(s)) => s.as_str(),
            _ => "",
        };
        // `new` puts a bare IPv6 host in gobetween's brackets.
        Ok(BackendSpec {
            weight: opt(&self.weight, 1)?,
            priority: opt(&self.priority, 1)?,
            max_connections: opt(&self.max_connections, 0)?,
            ..BackendSpec::new(host, port, sni)
        })
    }
}

/// Hand each element of the top-level JSON array in `body` to `each`, one
/// at a time: the answer never exists as one `Value` tree, which costs
/// 10 to 40 times the text (a 16 MiB body of small objects took 670 MB).
/// An `Err` from `each` stops the parse and is returned as it is; a body
/// that is not an array gets `not_array`, broken JSON "invalid JSON: ...".
pub fn each_element(
    body: &[u8],
    not_array: &str,
    mut each: impl FnMut(usize, Value) -> Result<(), String>,
) -> Result<(), String> {
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let visitor = Elements {
        each: &mut each,
        failed: &mut failed,
    };
    let parsed = de.deserialize_any(visitor).and_then(|()| de.end());
    if let Some(e) = failed {
        return Err(e);
    }
    match parsed {
        Ok(()) => Ok(()),
        // Not an array (the visitor refused it), if the JSON is sound.
        Err(e) if e.is_data() => match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Err(not_array.to_string()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        },
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

struct Elements<'a, F> {
    each: &'a mut F,
    failed: &'a mut Option<String>,
}

impl<'de, F> Visitor<'de> for Elements<'_, F>
where
    F: FnMut(usize, Value) -> Result<(), String>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(item) = seq.next_element::<Value>()? {
            if let Err(e) = (self.each)(i, item) {
                *self.failed = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
            i += 1;
        }
        Ok(())
    }
}

/// A non-negative integer from a number (truncated) or a decimal string.
fn number(v: &Value, path: &str) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| format!("{path}: {n} is not a non-negative number")),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("{path}: \"{}\" is not a non-negative number", cut(s))),
        other => Err(format!("{path}: {} is not a number", show(other))),
    }
}

/// A JSON value for a message, cut short (it may be a huge object).
fn show(v: &Value) -> String {
    cut(&v.to_string())
}

/// One step of a path: a member name or an array index.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Name(&'a str),
    Index(usize),
}

/// The steps of `a.b[1].c` (a leading `.` is allowed).
fn steps(path: &str) -> Result<Vec<Step<'_>>, String> {
    let bad = |why: &str| format!("bad path {path:?}: {why}");
    let mut out = Vec::new();
    for part in path.trim_start_matches('.').split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            out.push(Step::Name(name));
        } else if rest.is_empty() {
            return Err(bad("an empty name"));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let (index, after) = r.split_once(']').ok_or_else(|| bad("missing ]"))?;
            let index = index
                .parse()
                .map_err(|_| bad(&format!("[{index}] is not an index")))?;
            out.push(Step::Index(index));
            rest = after;
        }
        if !rest.is_empty() {
            return Err(bad(&format!("{rest:?} after ]")));
        }
    }
    Ok(out)
}

/// Whether `path` can be followed (for config validation).
pub fn check_path(path: &str) -> Result<(), String> {
    steps(path).map(drop)
}

/// Follow `a.b[1].c` from `root`; `None` when a step is missing.
pub fn lookup<'a>(root: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let mut cur = root;
    for step in steps(path)? {
        let next = match step {
            Step::Name(name) => cur.get(name),
            Step::Index(i) => cur.get(i),
        };
        match next {
            Some(v) => cur = v,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> Json {
        Json {
            endpoint: String::new(),
            host: "host".into(),
            port: "port".into(),
            weight: "weight".into(),
            priority: "priority".into(),
            sni: "sni".into(),
            max_connections: "max_connections".into(),
        }
    }

    #[test]
    fn default_patterns() {
        let body = br#"[{"host":"127.0.0.1","port":8080},
            {"host":"::1","port":"81","weight":3,"priority":2.7,"sni":"x","max_connections":9}]"#;
        let specs = json().parse(body).unwrap();
        assert_eq!(specs[0].key(), "127.0.0.1:8080");
        assert_eq!(
            (specs[0].weight, specs[0].priority, specs[0].max_connections),
            (1, 1, 0)
        );
        let s = &specs[1];
        assert_eq!(s.key(), "[::1]:81");
        assert_eq!(
            (s.weight, s.priority, s.max_connections, s.sni.as_str()),
            (3, 2, 9, "x")
        );
    }

    #[test]
    fn nested_paths_and_indexes() {
        let mut j = json();
        j.host = ".address.ip".into();
        j.port = "ports[1]".into();
        j.weight = "meta.w[0][1]".into();
        let body = br#"[{"address":{"ip":"10.1.1.1"},"ports":[1,2],"meta":{"w":[[0,7]]}}]"#;
        let s = &j.parse(body).unwrap()[0];
        assert_eq!((s.key(), s.weight), ("10.1.1.1:2".to_string(), 7));
    }

    #[test]
    fn errors() {
        let j = json();
        assert!(j.parse(b"{not json").unwrap_err().contains("invalid JSON"));
        assert!(j.parse(br#"{"host":"a"}"#).unwrap_err().contains("array"));
        assert!(j.parse(br#"[{"port":1}]"#).unwrap_err().contains("no host"));
        assert!(
            j.parse(br#"[{"host":"a"}]"#)
                .unwrap_err()
                .contains("no port")
        );
        assert!(j.parse(br#"[{"host":"a","port":70000}]"#).is_err());
        assert!(j.parse(br#"[{"host":"a","port":1,"weight":-1}]"#).is_err());
        assert!(j.parse(br#"[{"host":1,"port":1}]"#).is_err());
        let huge = format!(r#"[{{"host":["{}"],"port":1}}]"#, "x".repeat(1 << 20));
        let e = j.parse(huge.as_bytes()).unwrap_err();
        assert!(e.len() < 1000, "a huge value is cut in the message");
        assert_eq!(j.parse(b"[]").unwrap(), vec![]);
        let mut bad = json();
        bad.port = "ports[x]".into();
        assert!(bad.parse(br#"[{"host":"a","ports":[1]}]"#).is_err());
        for path in ["a..b", "a.", "p[0", "p[0]x", "p[-1]", ""] {
            assert!(check_path(path).is_err(), "{path:?}");
        }
        for path in ["a", ".a", "a.b[1].c", "[0]", "a[0][1]", "a.[0]"] {
            assert_eq!(check_path(path), Ok(()), "{path:?}");
        }
    }
}

//! Unknown and obsolete keys: every key serde ignored becomes an error with
//! a "did you mean" suggestion, unless it is one of gobetween's obsolete keys
//! (then a warning).

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::ConfigError;
use super::load::{Seg, render};
use super::raw::*;

/// gobetween keys that old docs and sample configs use but that never did
/// anything (or moved): accepted anywhere, with this advice.
const OBSOLETE: [(&str, &str); 5] = [
    ("ping_timeout_duration", "use `timeout`"),
    ("exec_timeout_duration", "use `timeout`"),
    ("docker_cache_ttl", "it never had an effect"),
    (
        "prefer_server_ciphers",
        "the TLS library chooses the cipher order",
    ),
    ("globals", "the section never had an effect"),
];

/// Keys that are valid but should not be suggested.
const NOT_SUGGESTED: [&str; 2] = ["consul_service_datacenter", "profiler"];

/// Sort ignored keys into errors (unknown) and warnings (obsolete).
pub fn classify(ignored: &[Vec<Seg>], errors: &mut Vec<ConfigError>, warnings: &mut Vec<String>) {
    for path in ignored {
        let rendered = render(path);
        let Some(Seg::Key(key)) = path.last() else {
            errors.push(error(rendered, "unexpected value".into()));
            continue;
        };
        if let Some((_, advice)) = OBSOLETE.iter().find(|(k, _)| k == key) {
            warnings.push(format!(
                "{rendered}: obsolete gobetween key, ignored ({advice})"
            ));
            continue;
        }
        let valid = fields_at(&path[..path.len() - 1]);
        errors.push(error(rendered, unknown_message(key, valid)));
    }
}

fn error(path: String, message: String) -> ConfigError {
    ConfigError { path, message }
}

fn unknown_message(key: &str, valid: &[&str]) -> String {
    match suggest(key, valid) {
        Some(s) => format!("unknown key (did you mean \"{s}\"?)"),
        None if !valid.is_empty() && valid.len() <= 10 => {
            format!("unknown key (valid keys here: {})", valid.join(", "))
        }
        None => "unknown key".into(),
    }
}

/// The closest valid key, if it is close enough to be a likely typo.
pub fn suggest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let len = key.chars().count();
    let limit = (len / 3).clamp(1, 3);
    valid
        .iter()
        .filter(|v| !NOT_SUGGESTED.contains(v))
        // The distance is at least the difference in length: skip the
        // O(len^2) comparison for keys that cannot be close (a long key).
        .filter(|v| len.abs_diff(v.chars().count()) <= limit)
        .map(|v| (edit_distance(&lower, v), *v))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The keys valid in the table at `path` (empty if unknown).
pub fn fields_at(path: &[Seg]) -> &'static [&'static str] {
    let keys: Vec<&str> = path
        .iter()
        .map(|s| match s {
            Seg::Key(k) => k.as_str(),
            Seg::Index(_) => "[]",
        })
        .collect();
    match keys.as_slice() {
        [] => fields::<RawConfig>(),
        ["logging"] => fields::<RawLogging>(),
        ["api"] => fields::<RawApi>(),
        ["api", "basic_auth"] => fields::<RawBasicAuth>(),
        ["api", "tls"] => fields::<RawCertPaths>(),
        ["metrics"] => fields::<RawMetrics>(),
        ["profiler"] => fields::<RawProfiler>(),
        ["defaults"] => fields::<RawDefaults>(),
        ["acme"] => fields::<RawAcme>(),
        ["servers", _] => fields::<RawServer>(),
        ["servers", _, section] => server_section(section),
        ["healthd"] => fields::<RawHealthd>(),
        ["healthd", "checks", _] => fields::<RawHealthdCheck>(),
        ["healthd", "checks", _, "healthcheck"] => fields::<RawHealthcheck>(),
        _ => &[],
    }
}

fn server_section(section: &str) -> &'static [&'static str] {
    match section {
        "access" => fields::<RawAccess>(),
        "proxy_protocol" => fields::<RawProxyProtocol>(),
        "discovery" => fields::<RawDiscovery>(),
        "healthcheck" => fields::<RawHealthcheck>(),
        "sni" => fields::<RawSni>(),
        "tls" => fields::<RawTls>(),
        "backends_tls" => fields::<RawBackendsTls>(),
        "udp" => fields::<RawUdp>(),
        _ => &[],
    }
}

/// The field names a derived `Deserialize` struct declares, read by asking
/// it to deserialize from a deserializer that only records them.
pub fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut found: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut found));
    found
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field introspection"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field introspection"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_path(keys: &[&str]) -> Vec<Seg> {
        keys.iter().map(|k| Seg::Key(k.to_string())).collect()
    }

    #[test]
    fn introspects_fields() {
        assert!(fields::<RawServer>().contains(&"balance"));
        assert!(fields::<RawConfig>().contains(&"servers"));
        assert!(fields_at(&key_path(&["servers", "x", "healthcheck"])).contains(&"probe_send"));
    }

    #[test]
    fn suggests_close_keys() {
        let valid = fields::<RawServer>();
        assert_eq!(suggest("balanse", valid), Some("balance"));
        assert_eq!(suggest("Bind", valid), Some("bind"));
        assert_eq!(suggest("max-connections", valid), Some("max_connections"));
        assert_eq!(suggest("zzzzzzzz", valid), None);
    }

    #[test]
    fn classifies_unknown_and_obsolete() {
        let ignored = [
            key_path(&["servers", "web", "balanse"]),
            key_path(&["servers", "web", "healthcheck", "ping_timeout_duration"]),
            key_path(&["globals"]),
            key_path(&["defaults", "balance"]),
        ];
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        classify(&ignored, &mut errors, &mut warnings);
        assert_eq!(
            errors[0].to_string(),
            "servers.web.balanse: unknown key (did you mean \"balance\"?)"
        );
        assert!(
            errors[1]
                .message
                .starts_with("unknown key (valid keys here: max_connections")
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(
            warnings,
            [
                "servers.web.healthcheck.ping_timeout_duration: obsolete gobetween key, ignored (use `timeout`)",
                "globals: obsolete gobetween key, ignored (the section never had an effect)",
            ]
        );
    }
}

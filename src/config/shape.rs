//! serde lets a derived struct be read from an array (fields by position),
//! so `api = [true]` or a JSON document `[]` would be accepted silently.
//! This check, run on the generic document, requires a table wherever the
//! schema has a section.

use serde_json::Value;

use super::ConfigError;

const TOP: [&str; 7] = [
    "logging", "api", "metrics", "profiler", "defaults", "acme", "servers",
];
const API: [&str; 2] = ["basic_auth", "tls"];
const SERVER: [&str; 8] = [
    "access",
    "proxy_protocol",
    "discovery",
    "healthcheck",
    "sni",
    "tls",
    "backends_tls",
    "udp",
];

/// Errors for every section that is present but not a table.
pub fn check(doc: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let Some(top) = table(doc, "", &mut errors) else {
        return errors;
    };
    for key in TOP {
        let Some(section) = top.get(key) else {
            continue;
        };
        let Some(section) = table(section, key, &mut errors) else {
            continue;
        };
        match key {
            "api" => children(section, "api", &API, &mut errors),
            "servers" => servers(section, &mut errors),
            _ => {}
        }
    }
    errors
}

fn servers(servers: &serde_json::Map<String, Value>, errors: &mut Vec<ConfigError>) {
    for (name, server) in servers {
        let path = format!("servers.{name}");
        if let Some(server) = table(server, &path, errors) {
            children(server, &path, &SERVER, errors);
        }
    }
}

fn children(
    parent: &serde_json::Map<String, Value>,
    path: &str,
    keys: &[&str],
    errors: &mut Vec<ConfigError>,
) {
    for key in keys {
        if let Some(value) = parent.get(*key) {
            table(value, &format!("{path}.{key}"), errors);
        }
    }
}

fn table<'a>(
    value: &'a Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'a serde_json::Map<String, Value>> {
    let map = value.as_object();
    if map.is_none() && !value.is_null() {
        errors.push(ConfigError {
            path: path.to_string(),
            message: format!("expected a table (object), found {}", kind(value)),
        });
    }
    map
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

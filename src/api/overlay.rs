//! Servers changed through the API, laid over the config file.
//!
//! The overlay maps a server name to its section as posted (`Some`) or to
//! "deleted" (`None`). The effective config is always the file with the
//! overlay applied, validated as one JSON document by the ordinary config
//! pipeline, so a posted server gets exactly the checks (and `servers.NAME.key`
//! messages) a file would. SIGHUP re-reads the file and lays the overlay over
//! it again. Pure code.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::raw::RawConfig;
use crate::config::{ConfigError, Format, Loaded, parse};

/// Server name -> section as posted, or `None` for deleted.
pub type Overlay = BTreeMap<String, Option<Value>>;

/// The file's raw config with `overlay` applied, validated.
pub fn merge(file: &RawConfig, overlay: &Overlay) -> Result<Loaded, Vec<ConfigError>> {
    let mut doc = serde_json::to_value(file).map_err(|e| vec![plain(e.to_string())])?;
    let Value::Object(root) = &mut doc else {
        return Err(vec![plain("config is not an object".into())]);
    };
    let servers = root
        .entry("servers")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(servers) = servers {
        for (name, entry) in overlay {
            match entry {
                Some(section) => servers.insert(name.clone(), section.clone()),
                None => servers.remove(name),
            };
        }
    }
    let text = serde_json::to_string(&doc).map_err(|e| vec![plain(e.to_string())])?;
    let loaded = parse(&text, Format::Json)
        .map_err(|errors| errors.into_iter().map(without_position).collect::<Vec<_>>())?;
    let missing = crate::daemon::unsupported(&loaded.config);
    if missing.is_empty() {
        Ok(loaded)
    } else {
        Err(missing)
    }
}

/// serde's " (line L, column C)" points into the merged one-line document,
/// which the client never saw: drop it (the field path says where).
fn without_position(mut e: ConfigError) -> ConfigError {
    if let Some(at) = e.message.rfind(" (line ")
        && e.message[at..].contains(", column ")
        && e.message.ends_with(')')
    {
        e.message.truncate(at);
    }
    e
}

fn plain(message: String) -> ConfigError {
    ConfigError {
        path: String::new(),
        message,
    }
}

/// Errors as the API returns them: a message naming the fields, and the list.
pub fn errors_json(errors: &[ConfigError]) -> Value {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    serde_json::json!({
        "error": lines.join("; "),
        "errors": errors
            .iter()
            .map(|e| serde_json::json!({ "field": e.path, "message": e.message }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file() -> RawConfig {
        let text = r#"
[defaults]
max_connections = 7
[servers.web]
bind = "127.0.0.1:3000"
[servers.web.discovery]
kind = "static"
static_list = ["127.0.0.1:8000"]
"#;
        parse(text, Format::Toml).unwrap().raw
    }

    /// gobetween's own helper script body (with an IP instead of localhost).
    fn gobetween_body() -> Value {
        json!({"bind":"127.0.0.1:3001","healthcheck":{"kind":"ping","interval":"2s","timeout":"1s"},"discovery":{"kind":"static","static_list":["127.0.0.1:8000"]}})
    }

    #[test]
    fn adds_a_server_with_file_defaults() {
        let overlay = Overlay::from([("api1".into(), Some(gobetween_body()))]);
        let loaded = merge(&file(), &overlay).unwrap();
        assert_eq!(loaded.config.servers.len(), 2);
        assert_eq!(loaded.config.servers["api1"].max_connections, 7);
    }

    #[test]
    fn deletes_a_file_server() {
        let overlay = Overlay::from([("web".into(), None)]);
        assert!(merge(&file(), &overlay).unwrap().config.servers.is_empty());
    }

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let mut body = gobetween_body();
        body["balanse"] = json!("weight");
        body["max_connections"] = json!("many");
        let overlay = Overlay::from([("x".into(), Some(body))]);
        let errors = merge(&file(), &overlay).unwrap_err();
        let text = errors_json(&errors)["error"].to_string();
        assert!(text.contains("servers.x.max_connections"), "{text}");
        // Positions would point into the merged document, not the body.
        assert!(
            !text.contains("line 1") && !text.contains("column"),
            "{text}"
        );
        let mut body = gobetween_body();
        body["balanse"] = json!("weight");
        let overlay = Overlay::from([("x".into(), Some(body))]);
        let errors = merge(&file(), &overlay).unwrap_err();
        assert_eq!(errors[0].path, "servers.x.balanse");
        assert!(errors[0].message.contains("did you mean"), "{errors:?}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let mut body = gobetween_body();
        body["bind"] = json!("nowhere");
        let overlay = Overlay::from([("x".into(), Some(body))]);
        let errors = merge(&file(), &overlay).unwrap_err();
        assert_eq!(errors[0].path, "servers.x.bind");
    }
}

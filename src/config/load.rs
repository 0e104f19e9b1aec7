//! Text -> [`RawConfig`], collecting the path of every key serde ignored.
//!
//! The deserializer is wrapped twice: `serde_ignored` reports unknown keys
//! (the parse goes on), `serde_path_to_error` names the key of a type error
//! (serde stops at the first one).

use super::raw::RawConfig;
use super::{ConfigError, Format};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Render `[servers, web, balance]` as `servers.web.balance` and indices
/// as `static_list[2]`.
pub fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What decoding produced: the raw config (unless a syntax or type error
/// stopped it), the ignored keys seen so far, and that error.
pub struct Decoded {
    pub raw: Option<RawConfig>,
    pub ignored: Vec<Vec<Seg>>,
    pub errors: Vec<ConfigError>,
}

pub fn decode(text: &str, format: Format) -> Decoded {
    let mut ignored = Vec::new();
    let result = match format {
        Format::Toml => decode_toml(text, &mut ignored),
        Format::Json => decode_json(text, &mut ignored),
    };
    let (raw, errors) = match result {
        Ok(raw) => {
            let errors = shape_errors(text, format);
            (errors.is_empty().then_some(raw), errors)
        }
        Err(e) => (None, vec![e]),
    };
    Decoded {
        raw,
        ignored,
        errors,
    }
}

/// Sections that are not tables (see [`super::shape`]).
fn shape_errors(text: &str, format: Format) -> Vec<ConfigError> {
    let doc = match format {
        Format::Toml => toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| serde_json::to_value(t).ok()),
        Format::Json => serde_json::from_str::<serde_json::Value>(text).ok(),
    };
    doc.map(|d| super::shape::check(&d)).unwrap_or_default()
}

fn collect(ignored: &mut Vec<Vec<Seg>>) -> impl FnMut(serde_ignored::Path<'_>) + '_ {
    |path| {
        let mut segs = Vec::new();
        segments(&path, &mut segs);
        ignored.push(segs);
    }
}

fn segments(path: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            segments(parent, out);
            out.push(Seg::Index(*index));
        }
        Path::Map { parent, key } => {
            segments(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent, out),
    }
}

fn decode_toml(text: &str, ignored: &mut Vec<Vec<Seg>>) -> Result<RawConfig, ConfigError> {
    let mut callback = collect(ignored);
    let de = toml::Deserializer::new(text);
    let de = serde_ignored::Deserializer::new(de, &mut callback);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_string(e.path());
        let inner = e.into_inner();
        let mut message = inner.message().trim_end().to_string();
        if let Some(span) = inner.span() {
            let (line, column) = line_column(text, span.start);
            message.push_str(&format!(" (line {line}, column {column})"));
        }
        ConfigError { path, message }
    })
}

fn decode_json(text: &str, ignored: &mut Vec<Vec<Seg>>) -> Result<RawConfig, ConfigError> {
    let mut callback = collect(ignored);
    let mut json = serde_json::Deserializer::from_str(text);
    let de = serde_ignored::Deserializer::new(&mut json, &mut callback);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_string(e.path());
        json_error(path, e.inner())
    })?;
    json.end().map_err(|e| json_error(String::new(), &e))?;
    Ok(raw)
}

fn json_error(path: String, e: &serde_json::Error) -> ConfigError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = match text.strip_suffix(&suffix) {
        Some(m) if e.line() > 0 => format!("{m} (line {}, column {})", e.line(), e.column()),
        _ => text,
    };
    ConfigError { path, message }
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." { String::new() } else { s }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths() {
        let p = [
            Seg::Key("servers".into()),
            Seg::Key("web".into()),
            Seg::Key("static_list".into()),
            Seg::Index(2),
        ];
        assert_eq!(render(&p), "servers.web.static_list[2]");
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn toml_type_error_names_the_key() {
        let text = "[servers.web]\nbind = \":80\"\nmax_connections = \"abc\"\n";
        let mut d = decode(text, Format::Toml);
        let e = d.errors.remove(0);
        assert_eq!(e.path, "servers.web.max_connections");
        assert!(e.message.contains("line 3"), "{}", e.message);
    }

    #[test]
    fn json_type_error_names_the_key() {
        let text = r#"{"servers": {"web": {"max_connections": "abc"}}}"#;
        let e = decode(text, Format::Json).errors.remove(0);
        assert_eq!(e.path, "servers.web.max_connections");
        assert!(e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn collects_ignored_keys() {
        let text = "[servers.web]\nbalanse = \"x\"\n[globals]\na = 1\n";
        let d = decode(text, Format::Toml);
        assert!(d.errors.is_empty());
        let paths: Vec<String> = d.ignored.iter().map(|p| render(p)).collect();
        assert_eq!(paths, ["servers.web.balanse", "globals"]);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = decode("[servers\n", Format::Toml).errors.remove(0);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = decode("{} x", Format::Json).errors.remove(0);
        assert!(e.message.contains("line 1"), "{}", e.message);
    }
}

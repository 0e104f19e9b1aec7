//! Text -> [`RawConfig`], collecting the path of every key serde ignored.
//!
//! The deserializer is wrapped twice: `serde_ignored` reports unknown keys
//! (the parse goes on), `serde_path_to_error` names the key of a type error.
//! serde stops at the first type error, so after one the generic document is
//! decoded again with the offending key removed, until it decodes (see
//! [`decode_rest`]): every type error is reported, and the rest of the file
//! is still checked for unknown keys and validated.

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

/// What decoding produced: the raw config (unless a syntax error, a section
/// that is not a table, or too many type errors stopped it), the ignored
/// keys, the errors, and the keys removed after a type error (`raw` lacks
/// them, so validation must not report them as missing).
pub struct Decoded {
    pub raw: Option<RawConfig>,
    pub ignored: Vec<Vec<Seg>>,
    pub errors: Vec<ConfigError>,
    pub removed: Vec<String>,
}

/// Type errors reported after the first one, at most (each costs a decode).
const MORE_TYPE_ERRORS: usize = 31;

pub fn decode(text: &str, format: Format) -> Decoded {
    let mut ignored = Vec::new();
    let result = match format {
        Format::Toml => decode_toml(text, &mut ignored),
        Format::Json => decode_json(text, &mut ignored),
    };
    let doc = generic(text, format);
    match result {
        Ok(raw) => {
            let errors = doc.map(|d| super::shape::check(&d)).unwrap_or_default();
            Decoded {
                raw: errors.is_empty().then_some(raw),
                ignored,
                errors,
                removed: Vec::new(),
            }
        }
        Err((path, e)) => match doc {
            // A type error in a document with sound syntax and shape.
            Some(doc) if super::shape::check(&doc).is_empty() => decode_rest(doc, path, e),
            _ => Decoded {
                raw: None,
                ignored,
                errors: vec![e],
                removed: Vec::new(),
            },
        },
    }
}

/// True when `text` has no syntax error in `format`.
pub fn syntax_ok(text: &str, format: Format) -> bool {
    generic(text, format).is_some()
}

/// The document as a generic value (`None` on a syntax error).
fn generic(text: &str, format: Format) -> Option<serde_json::Value> {
    match format {
        Format::Toml => toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| serde_json::to_value(t).ok()),
        Format::Json => serde_json::from_str::<serde_json::Value>(text).ok(),
    }
}

/// After a type error at `path`: remove that key from `doc` and decode
/// again, as long as new type errors come (up to [`MORE_TYPE_ERRORS`]).
fn decode_rest(mut doc: serde_json::Value, mut path: Vec<Seg>, first: ConfigError) -> Decoded {
    let mut out = Decoded {
        raw: None,
        ignored: Vec::new(),
        errors: vec![first],
        removed: Vec::new(),
    };
    while out.errors.len() <= MORE_TYPE_ERRORS {
        let Some(key) = remove(&mut doc, &path) else {
            break;
        };
        out.removed.push(key);
        out.ignored.clear();
        // Through JSON text: the JSON decoder exists anyway, while decoding
        // from the value would add a third copy of every Deserialize impl
        // (about 180 KB of binary).
        let Ok(text) = serde_json::to_string(&doc) else {
            break;
        };
        match decode_json(&text, &mut out.ignored) {
            Ok(raw) => {
                out.raw = Some(raw);
                break;
            }
            Err((at, mut e)) => {
                // A position in the re-encoded text would mislead.
                if let Some(cut) = e.message.rfind(" (line ") {
                    e.message.truncate(cut);
                }
                path = at;
                out.errors.push(e);
            }
        }
    }
    out
}

/// Remove the key at `path` (for an array element, the whole array) from
/// `doc`; returns the removed key's rendered path.
fn remove(doc: &mut serde_json::Value, path: &[Seg]) -> Option<String> {
    let last_key = path.iter().rposition(|s| matches!(s, Seg::Key(_)))?;
    let (parent, key) = (&path[..last_key], &path[last_key]);
    let mut node = doc;
    for seg in parent {
        node = match seg {
            Seg::Key(k) => node.get_mut(k.as_str())?,
            Seg::Index(i) => node.get_mut(*i)?,
        };
    }
    let Seg::Key(k) = key else { return None };
    node.as_object_mut()?.remove(k.as_str())?;
    Some(render(&path[..=last_key]))
}

fn segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .map_while(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            _ => None,
        })
        .collect()
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

/// A decode error: the path of the offending key and the error.
type Failed = (Vec<Seg>, ConfigError);

fn decode_toml(text: &str, ignored: &mut Vec<Vec<Seg>>) -> Result<RawConfig, Failed> {
    let mut callback = collect(ignored);
    let de = toml::Deserializer::new(text);
    let de = serde_ignored::Deserializer::new(de, &mut callback);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let (segs, path) = (segs(e.path()), path_string(e.path()));
        let inner = e.into_inner();
        // toml puts a headline and the detail on two lines
        // ("invalid table header\nduplicate key ..."): one line reads better.
        let text_of = inner.message().trim_end().replace('\n', ": ");
        let mut message = super::secrets::scrub_message(&path, &text_of);
        number_hint(&segs, &mut message);
        if let Some(span) = inner.span() {
            let (line, column) = line_column(text, span.start);
            message.push_str(&format!(" (line {line}, column {column})"));
        }
        (segs, ConfigError { path, message })
    })
}

fn decode_json(text: &str, ignored: &mut Vec<Vec<Seg>>) -> Result<RawConfig, Failed> {
    let mut callback = collect(ignored);
    let mut json = serde_json::Deserializer::from_str(text);
    let de = serde_ignored::Deserializer::new(&mut json, &mut callback);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let (segs, path) = (segs(e.path()), path_string(e.path()));
        let mut error = json_error(path, e.inner());
        number_hint(&segs, &mut error.message);
        (segs, error)
    })?;
    json.end()
        .map_err(|e| (Vec::new(), json_error(String::new(), &e)))?;
    Ok(raw)
}

fn json_error(path: String, e: &serde_json::Error) -> ConfigError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = match text.strip_suffix(&suffix) {
        Some(m) if e.line() > 0 => format!("{m} (line {}, column {})", e.line(), e.column()),
        _ => text,
    };
    let message = super::secrets::scrub_message(&path, &message);
    ConfigError { path, message }
}

/// A number where a string goes that holds one: a duration (`timeout = 5`)
/// or the PROXY protocol version (`version = 2`): say how to write it.
/// Every `*timeout`, `*interval` and `state_max_age` key is a duration.
fn number_hint(path: &[Seg], message: &mut String) {
    let Some(Seg::Key(key)) = path.last() else {
        return;
    };
    let parent = match path.len() {
        2.. => &path[path.len() - 2],
        _ => &Seg::Index(0),
    };
    let hint = if key.ends_with("timeout") || key.ends_with("interval") || key == "state_max_age" {
        "a duration with a unit, e.g. \"5s\" or \"500ms\""
    } else if key == "version" && *parent == Seg::Key("proxy_protocol".into()) {
        "write \"1\" or \"2\" in quotes"
    } else {
        return;
    };
    let number = message.starts_with("invalid type: integer")
        || message.starts_with("invalid type: floating point");
    let expected = "expected a string";
    if number && message.contains(expected) {
        *message = message.replacen(expected, &format!("{expected} ({hint})"), 1);
    }
}

/// The known part of an error's path (a syntax error inside a map ends in
/// an unknown segment, which serde_path_to_error renders as `?`).
fn path_string(path: &serde_path_to_error::Path) -> String {
    render(&segs(path))
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
    fn a_json_syntax_error_names_no_unknown_key() {
        let text = r#"{"servers": {"a": {"bind": ":80"},}}"#;
        let e = decode(text, Format::Json).errors.remove(0);
        assert_eq!(e.path, "servers");
        assert!(e.message.contains("trailing comma"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = decode("[servers\n", Format::Toml).errors.remove(0);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = decode("{} x", Format::Json).errors.remove(0);
        assert!(e.message.contains("line 1"), "{}", e.message);
    }
}

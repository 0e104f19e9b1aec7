//! Configuration pipeline: text -> raw serde structs (gobetween's key names)
//! -> validation that reports every error with its `section.key` -> the
//! runtime [`Config`], which cannot be invalid.

pub mod duration;
mod env;
mod keys;
mod load;
pub mod raw;
pub mod secrets;
mod shape;
mod types;
mod unescape;
mod validate;

pub use env::{env_refs, substitute_env, unset_env};
pub use types::*;
pub use unescape::unescape;
pub use validate::globals::LOG_LEVELS;
pub use validate::tls::cipher_code;
#[cfg(test)]
pub use validate::values::NO_LOOKUP;
pub use validate::values::{not_one_of, regex_error};

use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// By file extension: `.json` is JSON, anything else TOML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

/// One problem found in a config: where (`servers.web.balance`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    /// A `bind` that overlaps another listener's: a conflict with what runs
    /// (the API answers 409 for it, like a port in use), not a bad value.
    pub fn is_bind_conflict(&self) -> bool {
        self.path.ends_with(".bind") && self.message.ends_with(validate::binds::OVERLAP)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A validated config plus the warnings found on the way (obsolete keys...).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// `"path: message"` lines, e.g. obsolete keys; log them, do not fail.
    pub warnings: Vec<String>,
    /// The file as parsed (unset keys are `None`), for dumps.
    pub raw: raw::RawConfig,
}

/// Parse and validate config text. On failure, every error found is
/// returned (a syntax error stops the parse, so it comes only with the
/// unknown keys seen before it; type errors do not, see [`load`]).
/// A syntax error in a text that reads in the other format (a JSON file
/// without the `.json` extension): say how to read it so.
fn format_hint(text: &str, format: Format) -> Option<ConfigError> {
    let (other, how) = match format {
        Format::Toml => (Format::Json, "JSON: name the file *.json or pass -f json"),
        Format::Json => (Format::Toml, "TOML: pass -f toml"),
    };
    let misread =
        !text.trim().is_empty() && !load::syntax_ok(text, format) && load::syntax_ok(text, other);
    misread.then(|| ConfigError {
        path: String::new(),
        message: format!("the text reads as {how}"),
    })
}

pub fn parse(text: &str, format: Format) -> Result<Loaded, Vec<ConfigError>> {
    // A byte-order mark (some editors write one): the TOML parser skips it,
    // the JSON one stops at it with "expected value (line 1, column 1)".
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let decoded = load::decode(text, format);
    let mut ctx = validate::Ctx::default();
    keys::classify(&decoded.ignored, &mut ctx.errors, &mut ctx.warnings);
    let Some(raw) = decoded.raw else {
        ctx.errors.extend(decoded.errors);
        ctx.errors.extend(format_hint(text, format));
        return Err(ctx.errors);
    };
    let config = validate::build(&raw, &mut ctx);
    ctx.errors.extend(secrets::marker_errors(&raw));
    if !decoded.errors.is_empty() {
        // Keys removed after a type error are absent from `raw`, not wrong:
        // drop what validation says of them and of the sections holding them.
        let removed = |e: &ConfigError| {
            let p = &e.path;
            decoded.removed.iter().any(|r| within(p, r) || within(r, p))
        };
        ctx.errors.retain(|e| !removed(e));
        let rest = std::mem::replace(&mut ctx.errors, decoded.errors);
        ctx.errors.extend(rest);
    }
    match config {
        Some(config) if ctx.errors.is_empty() => Ok(Loaded {
            config,
            warnings: ctx.warnings,
            raw,
        }),
        _ => Err(ctx.errors),
    }
}

/// `path` is `key` or lies under it (`key.x`, `key[0]`); every path lies
/// under the root (`""`).
fn within(path: &str, key: &str) -> bool {
    key.is_empty()
        || path
            .strip_prefix(key)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

#[cfg(test)]
mod tests;

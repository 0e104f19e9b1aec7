//! Tests of the whole pipeline: text in, `Config` or errors out.

mod discovery;
mod docs;
mod fuzz;
mod healthcheck;
mod samples;
mod server;
mod type_errors;

use super::*;

/// Parse TOML that must be valid.
pub fn ok(text: &str) -> Loaded {
    match parse(text, Format::Toml) {
        Ok(l) => l,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

/// Parse TOML that must fail; the errors rendered as `path: message`.
pub fn errors(text: &str) -> Vec<String> {
    match parse(text, Format::Toml) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// A server section `web` on :8080 with a static backend, plus `extra` lines.
pub fn server(extra: &str) -> String {
    format!(
        "[servers.web]\nbind = \":8080\"\n{extra}\n\
         [servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"10.0.0.1:80\"]\n"
    )
}

/// The error list contains one starting with `prefix`.
#[track_caller]
pub fn assert_has(errors: &[String], prefix: &str) {
    assert!(
        errors.iter().any(|e| e.starts_with(prefix)),
        "no error starting with {prefix:?} in {errors:#?}"
    );
}

#[track_caller]
pub fn assert_warned(loaded: &Loaded, prefix: &str) {
    assert!(
        loaded.warnings.iter().any(|w| w.starts_with(prefix)),
        "no warning starting with {prefix:?} in {:#?}",
        loaded.warnings
    );
}

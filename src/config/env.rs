//! `${NAME}` substitution in the raw config text (gobetween's `-e`).

/// Replace every `${NAME}` with the value of the environment variable NAME;
/// unset (or not valid Unicode) gives the empty string. There is no default
/// syntax; `$NAME` without braces and an unterminated `${` are left as written.
pub fn substitute_env(text: &str) -> String {
    substitute_with(text, |name| std::env::var(name).ok())
}

/// The names in `text`'s `${NAME}`s that are unset, each once (for a hint
/// next to the errors an empty value causes, e.g. `max_connections = `).
pub fn unset_env(text: &str) -> Vec<String> {
    let mut unset = Vec::new();
    substitute_with(text, |name| {
        let value = std::env::var(name).ok();
        if value.is_none() && !unset.iter().any(|u: &String| u == name) {
            unset.push(name.to_string());
        }
        value
    });
    unset
}

/// The names of `text`'s `${NAME}`s, each once (for a hint when `-e` is off).
pub fn env_refs(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    substitute_with(text, |name| {
        if !names.iter().any(|n: &String| n == name) {
            names.push(name.to_string());
        }
        None
    });
    names
}

/// [`substitute_env`] with a custom lookup (for tests).
pub fn substitute_with(text: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_name(&after[..end]) => {
                out.push_str(&lookup(&after[..end]).unwrap_or_default());
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "HOST" => Some("10.0.0.1".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_braced_names() {
        let cases = [
            ("bind = \"${HOST}:${PORT}\"", "bind = \"10.0.0.1:8080\""),
            ("x = \"${UNSET}\"", "x = \"\""),
            ("$PORT ${ PORT} ${} ${PORT", "$PORT ${ PORT} ${} ${PORT"),
            ("${${PORT}}", "${8080}"),
            ("no vars", "no vars"),
            ("é${PORT}é", "é8080é"),
        ];
        for (text, want) in cases {
            assert_eq!(substitute_with(text, lookup), want, "{text}");
        }
    }

    #[test]
    fn lists_referenced_names_once() {
        let refs = env_refs("a = \"${HOST}:${PORT}\" b = \"$X ${ Y} ${HOST}\"");
        assert_eq!(refs, ["HOST", "PORT"]);
    }

    #[test]
    fn names_unset_variables_once() {
        let unset = unset_env("a = ${BETWIXT_TEST_UNSET_X}${PATH}${BETWIXT_TEST_UNSET_X}");
        assert_eq!(unset, ["BETWIXT_TEST_UNSET_X"]);
    }

    #[test]
    fn reads_the_process_environment() {
        // PATH is set in any test environment.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(substitute_env("${PATH}"), path);
    }
}

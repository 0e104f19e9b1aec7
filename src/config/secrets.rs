//! Which config values are secrets, and how they are hidden. Pure code.
//!
//! Policy (docs/API.md, "Secrets"):
//! - **Dumps** (`/dump`, `/servers`): a secret is replaced by [`REDACTED`]
//!   and the rest of the value keeps its shape, so a dump still reads (and
//!   diffs) like the config:
//!   - whole values: `api.basic_auth.password`, `consul_auth_password`,
//!     `consul_acl_token`, `lxd_server_remote_password`, `probe_send`,
//!     `script_content`, and health-check header values whose name
//!     contains a word of [`SECRET_WORDS`];
//!   - URLs (`json_endpoint`, `plaintext_endpoint`, `docker_endpoint`,
//!     `consul_host`, `lxd_server_address`, `webhook_url`, and the http
//!     check's `path`): the password of the user info (or a lone user
//!     name, usually a token) and every query value ([`mask_url`]);
//!   - `exec_command` arguments: the value of `NAME=VALUE` / `--NAME=VALUE`
//!     and the argument after `--NAME` when NAME contains a secret word, a
//!     shell's `-c` script (like `script_content`), URLs as above, a
//!     header argument (`'X-Auth-Token: T'`) whose name has a secret word,
//!     and `mysql -pT`, `redis-cli -a T`, `curl -u USER:T` ([`mask_args`]).
//! - **Logs and error messages** name a URL without its user info and
//!   query ([`url_for_logs`]) and never quote a secret-typed value.
//! - **Coming back**: a config (file or API body) holding the marker is
//!   refused naming the key ([`marker_errors`]); `PUT /servers/NAME` first
//!   puts the server's current value back wherever the marker comes back
//!   unchanged ([`restore`]).

use serde_json::Value;

use super::ConfigError;
use super::raw::{RawConfig, RawDiscovery, RawHealthcheck, RawServer};

/// What a secret is replaced with in dumps.
pub const REDACTED: &str = "<redacted>";

/// Words that mark a name (header, argument, query key) as a credential:
/// `Authorization`, `X-Auth-Token`, `X-API-Key`, `Cookie`, `--password`...
pub const SECRET_WORDS: [&str; 7] = [
    "auth", "token", "key", "cookie", "secret", "passw", "session",
];

/// Does `name` (a header, an option, a variable) name a credential?
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// Where a URL's user info sits: the bytes between `scheme://` and the
/// first `/`, `?` or `#` up to the last `@`.
fn user_info_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..end].rfind('@')?;
    Some((start, start + at))
}

/// `url` for dumps: the user info's password (or a lone user name) and
/// every query value replaced by [`REDACTED`]; scheme, host and path kept.
pub fn mask_url(url: &str) -> String {
    let (head, rest) = match user_info_span(url) {
        Some((start, at)) => {
            let info = &url[start..at];
            let shown = match info.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}"),
                None => REDACTED.to_string(),
            };
            (format!("{}{shown}", &url[..start]), &url[at..])
        }
        None => (String::new(), url),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let mut out = head;
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let items: Vec<String> = query
                .split('&')
                .map(|item| match item.split_once('=') {
                    Some((k, _)) => format!("{k}={REDACTED}"),
                    None if item.is_empty() => String::new(),
                    None => REDACTED.to_string(),
                })
                .collect();
            out.push_str(&items.join("&"));
        }
        None => out.push_str(rest),
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// `url` for logs and error messages: without user info, query and fragment.
pub fn url_for_logs(url: &str) -> String {
    let plain = match user_info_span(url) {
        Some((start, at)) => format!("{}{}", &url[..start], &url[at + 1..]),
        None => url.to_string(),
    };
    plain
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Shells whose `-c` argument is an inline script (hidden whole, as
/// `script_content`).
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"];

/// Tools whose password option no secret word names: `-pSECRET` (inline
/// only: a lone `-p` prompts), `-a SECRET`, `-u USER:SECRET`.
const INLINE_P: [&str; 5] = ["mysql", "mysqladmin", "mysqldump", "mariadb", "sshpass"];
const NEXT_A: [&str; 2] = ["redis-cli", "valkey-cli"];
const USER_PASS: [&str; 2] = ["curl", "wget"];

/// What [`mask_args`] does with the argument after an option.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    Show,
    Hide,
    /// `USER:SECRET`: keep the user.
    AfterColon,
}

/// Command arguments (program first) for dumps and logs: see the module doc.
/// Also a header argument (`'X-Auth-Token: T'`) whose name is a secret,
/// and the password options of a few well-known tools.
pub fn mask_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next = Next::Show;
    let program = args.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    let is = |list: &[&str]| program.is_some_and(|p| list.contains(&p));
    let shell = is(&SHELLS);
    for arg in args {
        let shown = match std::mem::replace(&mut next, Next::Show) {
            Next::Hide => REDACTED.to_string(),
            Next::AfterColon => match arg.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}"),
                None => REDACTED.to_string(),
            },
            Next::Show => {
                let (shown, then) = mask_arg(arg, shell, &is);
                next = then;
                shown
            }
        };
        out.push(shown);
    }
    out
}

/// One argument that does not follow an option: how it is shown, and what
/// happens to the next one.
fn mask_arg(arg: &str, shell: bool, is: &dyn Fn(&[&str]) -> bool) -> (String, Next) {
    if arg.contains("://") {
        return (mask_url(arg), Next::Show);
    }
    if let Some((name, _)) = arg.split_once('=').filter(|(n, _)| is_secret_name(n)) {
        return (format!("{name}={REDACTED}"), Next::Show);
    }
    let header = |(n, v): &(&str, &str)| v.starts_with(' ') && header_name(n);
    if let Some((name, _)) = arg.split_once(':').filter(header) {
        return (format!("{name}: {REDACTED}"), Next::Show);
    }
    if is(&INLINE_P) && arg.len() > 2 && arg.starts_with("-p") {
        return (format!("-p{REDACTED}"), Next::Show);
    }
    if is(&USER_PASS) && arg.starts_with("--user=") {
        return (format!("--user={}", mask_user_pass(&arg[7..])), Next::Show);
    }
    let secret_option = arg.starts_with('-') && is_secret_name(arg);
    let next = if secret_option || (shell && arg == "-c") || (is(&NEXT_A) && arg == "-a") {
        Next::Hide
    } else if is(&USER_PASS) && (arg == "-u" || arg == "--user") {
        Next::AfterColon
    } else {
        Next::Show
    };
    (arg.to_string(), next)
}

/// A header name (`X-Auth-Token`) that names a credential: a token of
/// letters, digits and dashes.
fn header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && is_secret_name(name)
}

fn mask_user_pass(value: &str) -> String {
    match value.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => value.to_string(),
    }
}

/// A copy of the config with every secret hidden (see the module doc).
pub fn redact(raw: &RawConfig) -> RawConfig {
    let mut raw = raw.clone();
    if let Some(auth) = raw.api.as_mut().and_then(|a| a.basic_auth.as_mut()) {
        hide(&mut auth.password);
    }
    for s in raw.servers.iter_mut().flat_map(|m| m.values_mut()) {
        redact_server(s);
    }
    let checks = raw.healthd.as_mut().and_then(|h| h.checks.as_mut());
    for c in checks.into_iter().flat_map(|m| m.values_mut()) {
        if let Some(hc) = c.healthcheck.as_mut() {
            redact_healthcheck(hc);
        }
    }
    raw
}

/// One `[servers.NAME]` section with its secrets hidden.
pub fn redact_server(s: &mut RawServer) {
    if let Some(d) = s.discovery.as_mut() {
        redact_discovery(d);
    }
    if let Some(hc) = s.healthcheck.as_mut() {
        redact_healthcheck(hc);
    }
}

fn hide(s: &mut Option<String>) {
    if s.is_some() {
        *s = Some(REDACTED.into());
    }
}

fn mask(s: &mut Option<String>) {
    if let Some(u) = s.as_mut() {
        *u = mask_url(u);
    }
}

fn redact_discovery(d: &mut RawDiscovery) {
    hide(&mut d.consul_auth_password);
    hide(&mut d.consul_acl_token);
    hide(&mut d.lxd_server_remote_password);
    for url in [
        &mut d.json_endpoint,
        &mut d.plaintext_endpoint,
        &mut d.docker_endpoint,
        &mut d.consul_host,
        &mut d.lxd_server_address,
    ] {
        mask(url);
    }
    if let Some(argv) = d.exec_command.as_mut() {
        *argv = mask_args(argv);
    }
}

fn redact_healthcheck(hc: &mut RawHealthcheck) {
    hide(&mut hc.probe_send);
    hide(&mut hc.script_content);
    mask(&mut hc.webhook_url);
    mask(&mut hc.path);
    for (name, value) in hc.headers.iter_mut().flatten() {
        if is_secret_name(name) {
            *value = REDACTED.into();
        }
    }
}

/// Every string of the config that holds [`REDACTED`], as an error naming
/// its key: a dump is no config (the secret it showed is gone).
pub fn marker_errors(raw: &RawConfig) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if let Ok(doc) = serde_json::to_value(raw) {
        find_markers(&doc, String::new(), &mut out);
    }
    out
}

fn find_markers(v: &Value, path: String, out: &mut Vec<ConfigError>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::String(s) if s.contains(REDACTED) => out.push(ConfigError {
            path,
            message: format!(
                "holds {REDACTED}, the mark /dump and /servers show instead of a secret; \
                 write the real value (PUT /servers/NAME keeps the current one where the \
                 mark comes back unchanged)"
            ),
        }),
        Value::Object(m) => m.iter().for_each(|(k, v)| find_markers(v, join(k), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| find_markers(v, format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// `incoming` (a server section sent to replace `current`) with every
/// string that equals the redacted form of `current`'s value at the same
/// place (and holds the marker) set back to that current value. A marker
/// anywhere else stays, for [`marker_errors`] to refuse.
pub fn restore(incoming: &mut Value, current: &RawServer) {
    let mut shown = current.clone();
    redact_server(&mut shown);
    let (Ok(real), Ok(shown)) = (serde_json::to_value(current), serde_json::to_value(&shown))
    else {
        return;
    };
    put_back(incoming, &shown, &real);
}

fn put_back(v: &mut Value, shown: &Value, real: &Value) {
    match v {
        Value::String(s) if s.contains(REDACTED) && shown.as_str() == Some(s.as_str()) => {
            *v = real.clone();
        }
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if let (Some(s), Some(r)) = (shown.get(k), real.get(k)) {
                    put_back(v, s, r);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                if let (Some(s), Some(r)) = (shown.get(i), real.get(i)) {
                    put_back(v, s, r);
                }
            }
        }
        _ => {}
    }
}

/// The last key of a rendered path (`servers.web.discovery.consul_acl_token`).
fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Is the key at `path` one whose whole value is a secret?
pub fn is_secret_key(path: &str) -> bool {
    let key = last_key(path);
    matches!(
        key,
        "password" | "consul_auth_password" | "consul_acl_token" | "lxd_server_remote_password"
    ) || matches!(key, "probe_send" | "script_content")
        || path.contains(".headers.")
}

/// A decoding error's message for the key at `path`, without the value
/// serde quotes (``invalid type: integer `123`, expected ...``) when the
/// key is a secret.
pub fn scrub_message(path: &str, message: &str) -> String {
    if !is_secret_key(path) {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for part in message.split('`') {
        out.push_str(if inside { REDACTED } else { part });
        inside = !inside;
    }
    out
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;

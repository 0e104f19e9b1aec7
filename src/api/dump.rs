//! `/dump` and the server objects of `/servers`: the effective config as
//! written, defaults filled in, secrets replaced. Pure code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::http::Answer;
use crate::config::Server;
use crate::config::raw::{RawConfig, RawServer};

/// What a secret is replaced with in dumps.
pub const REDACTED: &str = "<redacted>";

/// Words that mark a header's value as a credential (`Authorization`,
/// `X-Auth-Token`, `X-Vault-Token`, `X-API-Key`, `Cookie`, ...).
const SECRET_HEADER_WORDS: [&str; 7] = [
    "auth", "token", "key", "cookie", "secret", "passw", "session",
];

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADER_WORDS.iter().any(|w| name.contains(w))
}

/// `GET /dump?format=toml|json` (default toml; unknown -> 500 as gobetween).
pub fn dump(raw: &RawConfig, format: Option<String>) -> Answer {
    let raw = redact(raw);
    match format.as_deref().unwrap_or("toml") {
        "toml" | "" => match toml::to_string(&raw) {
            Ok(t) => Answer::Text(200, "application/toml; charset=utf-8", t),
            Err(e) => Answer::Json(500, json!(format!("cannot render toml: {e}"))),
        },
        "json" => Answer::Json(200, serde_json::to_value(&raw).unwrap_or(Value::Null)),
        other => Answer::Json(500, json!(format!("unknown format: {other}"))),
    }
}

/// A copy with every secret replaced by [`REDACTED`]: the API password,
/// discovery credentials and credential headers of http checks.
pub fn redact(raw: &RawConfig) -> RawConfig {
    let mut raw = raw.clone();
    let hide = |s: &mut Option<String>| {
        if s.is_some() {
            *s = Some(REDACTED.into());
        }
    };
    if let Some(auth) = raw.api.as_mut().and_then(|a| a.basic_auth.as_mut()) {
        hide(&mut auth.password);
    }
    for s in raw.servers.iter_mut().flat_map(|m| m.values_mut()) {
        redact_server(s, hide);
    }
    raw
}

fn redact_server(s: &mut RawServer, hide: impl Fn(&mut Option<String>)) {
    if let Some(d) = s.discovery.as_mut() {
        hide(&mut d.consul_auth_password);
        hide(&mut d.consul_acl_token);
        hide(&mut d.lxd_server_remote_password);
        for url in [&mut d.json_endpoint, &mut d.plaintext_endpoint] {
            if let Some(u) = url.as_mut() {
                *u = crate::discovery::web::mask_password(u, REDACTED);
            }
        }
    }
    if let Some(headers) = s.healthcheck.as_mut().and_then(|h| h.headers.as_mut()) {
        for (name, value) in headers.iter_mut() {
            if is_secret_header(name) {
                *value = REDACTED.into();
            }
        }
    }
}

/// gobetween's server object: the section as written with the defaults the
/// daemon applied filled in; secrets redacted. POSTing it back is valid.
pub fn filled(raw: &RawServer, s: &Server) -> Value {
    let mut one = RawConfig {
        servers: Some([(String::new(), raw.clone())].into()),
        ..Default::default()
    };
    one = redact(&one);
    let raw = one
        .servers
        .and_then(|mut m| m.remove(""))
        .unwrap_or_default();
    let mut v = serde_json::to_value(&raw).unwrap_or_else(|_| json!({}));
    let dur = |d: Option<Duration>| json!(d.map_or("0".to_string(), go_duration));
    let defaults = [
        ("bind", json!(s.bind.to_string())),
        (
            "protocol",
            json!(format!("{:?}", s.protocol).to_lowercase()),
        ),
        ("balance", json!(s.balance.name())),
        ("max_connections", json!(s.max_connections)),
        ("client_idle_timeout", dur(s.client_idle_timeout)),
        ("backend_idle_timeout", dur(s.backend_idle_timeout)),
        (
            "backend_connection_timeout",
            dur(s.backend_connection_timeout),
        ),
        (
            "backend_connection_retries",
            json!(s.backend_connection_retries),
        ),
        ("drain_timeout", json!(go_duration(s.drain_timeout))),
        ("low_rtt_tuning", json!(s.low_rtt_tuning)),
    ];
    if let Value::Object(o) = &mut v {
        for (k, val) in defaults {
            o.entry(k).or_insert(val);
        }
        let hc = o.entry("healthcheck").or_insert_with(|| json!({}));
        if let Value::Object(h) = hc {
            h.entry("kind").or_insert_with(|| json!(s.healthcheck.kind));
        }
        for k in ABSENT_AS_NULL {
            o.entry(k).or_insert(Value::Null);
        }
    }
    v
}

/// gobetween's optional server sub-sections (Go pointers): `null` when absent.
const ABSENT_AS_NULL: [&str; 6] = [
    "sni",
    "tls",
    "backends_tls",
    "udp",
    "access",
    "proxy_protocol",
];

/// Go's `time.Duration.String()` style: `1h2m3.5s`, `250ms`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let ms = d.subsec_millis();
    if total == 0 {
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let secs = if ms == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{ms:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// RFC 3339 in UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = crate::log::civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, parse};

    const CONFIG: &str = r#"
[api]
enabled = true
[api.basic_auth]
login = "admin"
password = "hunter2"
[servers.web]
bind = "127.0.0.1:3000"
[servers.web.discovery]
kind = "static"
static_list = ["127.0.0.1:8000"]
[servers.web.healthcheck]
kind = "ping"
interval = "2s"
timeout = "1s"
"#;

    #[test]
    fn dumps_never_show_the_password() {
        let loaded = parse(CONFIG, Format::Toml).unwrap();
        for format in ["toml", "json"] {
            let text = match dump(&loaded.raw, Some(format.into())) {
                Answer::Text(200, _, t) => t,
                Answer::Json(200, v) => v.to_string(),
                other => panic!("{other:?}"),
            };
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains(REDACTED), "{text}");
            assert!(text.contains("127.0.0.1:8000"), "{text}");
        }
        assert!(matches!(
            dump(&loaded.raw, Some("xml".into())),
            Answer::Json(500, _)
        ));
        let text = CONFIG.to_string()
            + "[servers.j]\nbind = \"127.0.0.1:3001\"\n[servers.j.discovery]\nkind = \"json\"\n\
               json_endpoint = \"http://lb:hunter3@127.0.0.1:9/x\"\n";
        let loaded = parse(&text, Format::Toml).unwrap();
        let Answer::Text(200, _, t) = dump(&loaded.raw, None) else {
            panic!()
        };
        assert!(!t.contains("hunter3") && t.contains("lb:"), "{t}");
    }

    #[test]
    fn credential_headers_are_redacted_by_name() {
        let text = format!(
            "{CONFIG}headers = {{ Authorization = \"a1\", \"X-Auth-Token\" = \"a2\", \"X-Vault-Token\" = \"a3\", \"Private-Token\" = \"a4\", \"X-API-Key\" = \"a5\", \"Set-Cookie\" = \"a6\", \"X-Client-Secret\" = \"a7\", \"X-Password\" = \"a8\", Accept = \"text/plain\", \"X-Request-Id\" = \"visible\" }}\n"
        );
        let loaded = parse(&text, Format::Toml).unwrap();
        let Answer::Text(_, _, dumped) = dump(&loaded.raw, None) else {
            panic!()
        };
        for n in 1..=8 {
            assert!(!dumped.contains(&format!("\"a{n}\"")), "a{n}: {dumped}");
        }
        assert!(
            dumped.contains("text/plain") && dumped.contains("visible"),
            "{dumped}"
        );
    }

    #[test]
    fn toml_dump_loads_back() {
        let loaded = parse(CONFIG, Format::Toml).unwrap();
        let Answer::Text(_, _, text) = dump(&loaded.raw, None) else {
            panic!()
        };
        let again = parse(&text, Format::Toml).unwrap();
        assert_eq!(again.config.servers, loaded.config.servers);
    }

    #[test]
    fn filled_server_has_defaults_and_posts_back() {
        let loaded = parse(CONFIG, Format::Toml).unwrap();
        let raw = &loaded.raw.servers.as_ref().unwrap()["web"];
        let v = filled(raw, &loaded.config.servers["web"]);
        assert_eq!(v["balance"], "weight");
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["healthcheck"]["kind"], "ping");
        assert_eq!(v["drain_timeout"], "30s");
        for k in ABSENT_AS_NULL {
            assert_eq!(v.get(k), Some(&Value::Null), "{k}");
        }
        let text = json!({ "servers": { "web": v } }).to_string();
        let again = parse(&text, Format::Json).unwrap();
        assert_eq!(again.config.servers, loaded.config.servers);
    }

    #[test]
    fn present_sub_sections_are_kept_absent_ones_null() {
        let text = format!("{CONFIG}[servers.web.access]\ndefault = \"deny\"\n");
        let loaded = parse(&text, Format::Toml).unwrap();
        let raw = &loaded.raw.servers.as_ref().unwrap()["web"];
        let v = filled(raw, &loaded.config.servers["web"]);
        assert_eq!(v["access"]["default"], "deny");
        assert_eq!(v.get("sni"), Some(&Value::Null));
        assert!(v["discovery"].is_object() && v["healthcheck"].is_object());
    }

    #[test]
    fn formats_times_like_go() {
        assert_eq!(go_duration(Duration::from_millis(3_723_500)), "1h2m3.5s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_123);
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00.123Z");
    }
}

//! `/dump` and the server objects of `/servers`: the effective config as
//! written, defaults filled in, secrets hidden (`config::secrets`). Pure code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::http::Answer;
use crate::config::Server;
use crate::config::raw::{RawConfig, RawServer};

pub use crate::config::secrets::{REDACTED, redact};

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

/// gobetween's server object: the section as written with the defaults the
/// daemon applied filled in; secrets redacted. POSTing it back is valid
/// when it holds no secret; `PUT` keeps the secrets behind unchanged marks.
pub fn filled(raw: &RawServer, s: &Server) -> Value {
    let mut raw = raw.clone();
    crate::config::secrets::redact_server(&mut raw);
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
        ("sockmap", json!(s.sockmap)),
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
    fn toml_dump_loads_back_and_its_marks_are_refused() {
        let loaded = parse(CONFIG, Format::Toml).unwrap();
        let Answer::Text(_, _, text) = dump(&loaded.raw, None) else {
            panic!()
        };
        let errors = parse(&text, Format::Toml).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "api.basic_auth.password");
        let no_api = CONFIG.replace(
            "[api.basic_auth]\nlogin = \"admin\"\npassword = \"hunter2\"",
            "",
        );
        let loaded = parse(&no_api, Format::Toml).unwrap();
        let Answer::Text(_, _, text) = dump(&loaded.raw, None) else {
            panic!()
        };
        let again = parse(&text, Format::Toml).unwrap();
        assert_eq!(again.config.servers, loaded.config.servers);
    }

    #[test]
    fn every_secret_kind_is_hidden_in_both_formats() {
        let text = format!(
            "{CONFIG}[servers.s]\nbind = \"127.0.0.1:3002\"\n\
             [servers.s.discovery]\nkind = \"exec\"\n\
             exec_command = [\"/bin/list\", \"--token\", \"S1\", \"http://127.0.0.1:9/x?key=S2\"]\n\
             [servers.s.healthcheck]\nkind = \"webhook\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
             webhook_url = \"http://127.0.0.1:9/hook?token=S4\"\n\
             [servers.c]\nbind = \"127.0.0.1:3003\"\n\
             [servers.c.discovery]\nkind = \"consul\"\nconsul_host = \"127.0.0.1:8500\"\n\
             consul_service_name = \"x\"\nconsul_acl_token = \"S5\"\n\
             consul_auth_username = \"u\"\nconsul_auth_password = \"S6\"\n\
             [servers.c.healthcheck]\nkind = \"probe\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
             probe_protocol = \"tcp\"\nprobe_send = \"AUTH S7\\\\r\\\\n\"\nprobe_recv = \"+OK\"\n\
             [servers.p]\nbind = \"127.0.0.1:3004\"\n\
             [servers.p.discovery]\nkind = \"plaintext\"\n\
             plaintext_endpoint = \"http://u:S3@127.0.0.1:9/list?access_token=S8\"\n\
             [servers.p.healthcheck]\nkind = \"script\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
             script_content = \"curl -H 'X-Token: S9' http://127.0.0.1:9/\"\n\
             [servers.h]\nbind = \"127.0.0.1:3005\"\n\
             [servers.h.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:8000\"]\n\
             [servers.h.healthcheck]\nkind = \"http\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
             path = \"/health?key=S10\"\n"
        );
        let loaded = parse(&text, Format::Toml).unwrap_or_else(|e| panic!("{e:?}"));
        for format in ["toml", "json"] {
            let shown = match dump(&loaded.raw, Some(format.into())) {
                Answer::Text(200, _, t) => t,
                Answer::Json(200, v) => v.to_string(),
                other => panic!("{other:?}"),
            };
            for n in 1..=10 {
                assert!(!shown.contains(&format!("S{n}\\")), "S{n} in {shown}");
                assert!(!shown.contains(&format!("S{n}\"")), "S{n} in {shown}");
                assert!(!shown.contains(&format!("S{n}'")), "S{n} in {shown}");
            }
            for kept in [
                "/bin/list",
                "127.0.0.1:9/hook",
                "access_token=",
                "/health?key=",
            ] {
                assert!(shown.contains(kept), "{kept} missing: {shown}");
            }
        }
        for (name, rt) in &loaded.config.servers {
            let raw = &loaded.raw.servers.as_ref().unwrap()[name];
            let v = filled(raw, rt).to_string();
            assert!(!(1..=10).any(|n| v.contains(&format!("S{n}\""))), "{v}");
        }
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

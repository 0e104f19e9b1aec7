//! Routes and what each answers. Reads use [`Shared`]; changes go to the
//! daemon with [`super::submit`].

use serde_json::{Value, json};
use tiny_http::Method;

use super::http::Answer;
use super::{Commands, Op, Reply, Shared, dump, status, submit};
use crate::http::url::percent_decode;
use crate::metrics::view::{ServerView, admin_label};
use crate::state::{ADMIN_DISABLED, ADMIN_DRAIN, ADMIN_ENABLED};

const TEXT: &str = "text/plain; charset=utf-8";

pub fn route(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    shared: &Shared,
    tx: Option<&Commands>,
) -> Answer {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = *method == Method::Get;
    match segs.as_slice() {
        ["ping"] if get => Answer::Text(200, TEXT, "OK".into()),
        [""] if get => info(shared),
        ["dump"] if get => dump::dump(&shared.raw(), param(query, "format")),
        ["servers"] if get => servers(shared),
        // `/servers/` (an unset variable in a script) names no server.
        ["servers", name, ..] if name.trim().is_empty() => Answer::not_found(),
        ["servers", name] => server(method, name, body, shared, tx),
        ["servers", name, "stats"] if get => stats(shared, name),
        ["servers", name, "backends", key, "health"] if get => backend_health(shared, name, key),
        ["servers", _, "backends", _, "health"] => method_not_allowed(),
        ["servers", name, "backends", key, action] if *method == Method::Post => {
            admin(name, key, action, query, tx)
        }
        ["status"] if get => status::page(shared, param(query, "refresh")),
        ["health"] if get => health(shared),
        ["metrics"] if get => metrics(shared),
        ["ping" | "" | "dump" | "servers" | "status" | "health" | "metrics"] => {
            method_not_allowed()
        }
        ["servers", _, "stats"] | ["servers", _, "backends", _, "drain" | "disable" | "enable"] => {
            method_not_allowed()
        }
        _ => Answer::not_found(),
    }
}

fn method_not_allowed() -> Answer {
    Answer::Json(405, json!({ "error": "method not allowed" }))
}

fn reply(r: Reply) -> Answer {
    Answer::Json(r.status, r.body)
}

/// The value of `key` in a query string (`a=1&b=2`), percent-decoded.
fn param<'a>(query: &'a str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v): (&'a str, &'a str)| percent_decode(v))
}

fn info(shared: &Shared) -> Answer {
    let now = std::time::SystemTime::now();
    let uptime = now.duration_since(shared.started).unwrap_or_default();
    Answer::Json(
        200,
        json!({
            "pid": std::process::id(),
            "time": dump::rfc3339(now),
            "startTime": dump::rfc3339(shared.started),
            "uptime": dump::go_duration(uptime),
            "version": env!("CARGO_PKG_VERSION"),
            "configuration": { "kind": "file", "path": shared.config_path },
        }),
    )
}

fn servers(shared: &Shared) -> Answer {
    let raw = shared.raw();
    let mut out = serde_json::Map::new();
    for rt in shared.servers() {
        if let Some(s) = raw.servers.as_ref().and_then(|m| m.get(&rt.name)) {
            out.insert(rt.name.clone(), dump::filled(s, &rt.plan().config));
        }
    }
    Answer::Json(200, Value::Object(out))
}

fn server(
    method: &Method,
    name: &str,
    body: &[u8],
    shared: &Shared,
    tx: Option<&Commands>,
) -> Answer {
    let Some(tx) = tx else {
        return Answer::not_found();
    };
    let name = name.to_string();
    match method {
        Method::Get => {
            let raw = shared.raw();
            let found = shared.server(&name).and_then(|rt| {
                let s = raw.servers.as_ref()?.get(&name)?;
                Some(dump::filled(s, &rt.plan().config))
            });
            Answer::Json(200, found.unwrap_or(Value::Null))
        }
        Method::Post | Method::Put => match parse_body(body) {
            Ok(body) if *method == Method::Post => reply(submit(tx, Op::Create { name, body })),
            Ok(body) => reply(submit(tx, Op::Replace { name, body })),
            Err(a) => a,
        },
        Method::Delete => reply(submit(tx, Op::Delete { name })),
        _ => method_not_allowed(),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Answer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Answer::Json(
            400,
            json!({ "error": "the body must be a JSON object (a server section)" }),
        )),
        Err(e) => Err(Answer::Json(
            400,
            json!({ "error": format!("invalid JSON: {e}") }),
        )),
    }
}

fn stats(shared: &Shared, name: &str) -> Answer {
    let Some(rt) = shared.server(name) else {
        return Answer::Json(200, Value::Null);
    };
    Answer::Json(200, stats_json(&ServerView::of(&rt)))
}

/// gobetween's stats object, plus `admin`, `score` and `health` per backend.
pub fn stats_json(v: &ServerView) -> Value {
    let backends: Vec<Value> = v
        .backends
        .iter()
        .map(|b| {
            let mut o = json!({
                "host": b.host,
                "port": b.port.to_string(),
                "priority": b.priority,
                "weight": b.weight,
                "stats": {
                    "live": b.live,
                    "discovered": b.discovered,
                    "total_connections": b.counters.total_connections,
                    "active_connections": b.counters.active_connections,
                    "refused_connections": b.counters.refused_connections,
                    "rx": b.counters.rx_total,
                    "tx": b.counters.tx_total,
                    "rx_second": b.counters.rx_second,
                    "tx_second": b.counters.tx_second,
                    "admin": admin_label(b.admin),
                    "score": b.score,
                    "health": if b.health.healthy { "up" } else { "down" },
                },
            });
            if b.max_connections > 0 {
                o["max_connections"] = json!(b.max_connections);
            }
            if !b.sni.is_empty() {
                o["sni"] = json!(b.sni);
            }
            o
        })
        .collect();
    json!({
        "active_connections": v.counters.active_connections,
        "rx_total": v.counters.rx_total,
        "tx_total": v.counters.tx_total,
        "rx_second": v.counters.rx_second,
        "tx_second": v.counters.tx_second,
        "backends": backends,
    })
}

fn backend_health(shared: &Shared, name: &str, key: &str) -> Answer {
    let Some(rt) = shared.server(name) else {
        return Answer::Json(404, json!({ "error": format!("no server {name}") }));
    };
    let view = ServerView::of(&rt);
    let Some(b) = view.backends.iter().find(|b| b.key == key) else {
        return Answer::Json(
            404,
            json!({ "error": format!("server {name} has no backend {key}") }),
        );
    };
    let mut out = serde_json::to_value(&b.health).unwrap_or(Value::Null);
    out["backend"] = json!(b.key);
    out["state"] = json!(if b.live { "up" } else { "down" });
    out["admin"] = json!(admin_label(b.admin));
    out["live"] = json!(b.live);
    out["since"] = json!(dump::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(b.health.since_ms)
    ));
    out["by_cause"] = crate::health::Cause::ALL
        .iter()
        .zip(b.health.by_cause)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c.label().to_string(), json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Answer::Json(200, out)
}

fn admin(name: &str, key: &str, action: &str, query: &str, tx: Option<&Commands>) -> Answer {
    let Some(tx) = tx else {
        return Answer::not_found();
    };
    let admin = match action {
        "enable" => ADMIN_ENABLED,
        "drain" => ADMIN_DRAIN,
        "disable" => ADMIN_DISABLED,
        _ => return Answer::not_found(),
    };
    let close = matches!(param(query, "close").as_deref(), Some("true" | "1" | ""));
    reply(submit(
        tx,
        Op::Admin {
            server: name.to_string(),
            backend: key.to_string(),
            admin,
            close: close && admin == ADMIN_DISABLED,
        },
    ))
}

/// `200 {"status":"UP"}` when every configured server listens and has an
/// electable backend; else 503 with what is wrong.
fn health(shared: &Shared) -> Answer {
    let mut problems: Vec<String> = shared
        .failed()
        .into_iter()
        .map(|(name, why)| format!("servers.{name}: not listening: {why}"))
        .collect();
    let mut servers = serde_json::Map::new();
    for rt in shared.servers() {
        let v = ServerView::of(&rt);
        let electable = v.electable();
        if electable == 0 {
            problems.push(format!(
                "servers.{}: no electable backend ({} configured)",
                v.name,
                v.backends.len()
            ));
        }
        servers.insert(
            v.name.clone(),
            json!({ "listening": true, "bind": v.bind, "electable": electable, "backends": v.backends.len() }),
        );
    }
    let up = problems.is_empty();
    let status = if up { 200 } else { 503 };
    Answer::Json(
        status,
        json!({ "status": if up { "UP" } else { "DOWN" }, "servers": servers, "problems": problems }),
    )
}

pub fn metrics(shared: &Shared) -> Answer {
    let views: Vec<ServerView> = shared
        .servers()
        .iter()
        .map(|rt| ServerView::of(rt))
        .collect();
    Answer::Text(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        crate::metrics::prometheus::render(&views),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("%5B%3A%3A1%5D:80"), "[::1]:80");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("web"), "web");
    }

    #[test]
    fn an_empty_server_name_is_not_a_server() {
        let shared = Shared::new("x.toml".into(), Default::default());
        // No daemon: a request that reached it would get 503.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        for method in [Method::Get, Method::Post, Method::Put, Method::Delete] {
            let a = route(&method, "/servers/", "", b"{}", &shared, Some(&tx));
            assert!(matches!(a, Answer::Text(404, ..)), "{method}: {a:?}");
        }
        let a = route(&Method::Post, "/servers/%20", "", b"{}", &shared, Some(&tx));
        assert!(matches!(a, Answer::Text(404, ..)), "{a:?}");
        let a = route(&Method::Post, "/servers/web", "", b"{}", &shared, Some(&tx));
        assert!(matches!(a, Answer::Json(503, _)), "{a:?}");
    }

    #[test]
    fn a_wrong_method_on_a_backend_route_is_405_and_an_unknown_action_404() {
        let shared = Shared::new("x.toml".into(), Default::default());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let at = |m: Method, action: &str| {
            let path = format!("/servers/web/backends/127.0.0.1:80/{action}");
            match route(&m, &path, "", b"", &shared, Some(&tx)) {
                Answer::Json(s, _) | Answer::Text(s, ..) => s,
            }
        };
        assert_eq!(at(Method::Post, "health"), 405);
        assert_eq!(at(Method::Delete, "health"), 405);
        for action in ["drain", "disable", "enable"] {
            assert_eq!(at(Method::Get, action), 405, "{action}");
        }
        assert_eq!(at(Method::Get, "bogus"), 404);
    }

    #[test]
    fn reads_query_params() {
        assert_eq!(param("format=json&x=1", "format").as_deref(), Some("json"));
        assert_eq!(param("close", "close").as_deref(), Some(""));
        assert_eq!(param("", "format"), None);
    }
}

//! `GET /status`: one self-contained HTML page (inline CSS, no script, no
//! external assets) in the spirit of HAProxy's stats page. `?refresh=N`
//! adds a `<meta http-equiv="refresh">` of N seconds.

use std::fmt::Write;

use super::Shared;
use super::http::Answer;
use crate::metrics::view::{BackendView, ServerView, admin_label};

const STYLE: &str = "body{font:13px sans-serif;margin:1em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em;min-width:60em}\
th,td{border:1px solid #bbb;padding:2px 8px;text-align:right}\
th{background:#ddd}td{white-space:nowrap}td:last-child{white-space:normal}td.l,th.l{text-align:left}\
caption{text-align:left;font-weight:bold;font-size:15px;padding:4px 0}\
tr.up td{background:#cfc}tr.down td{background:#fbb}\
tr.drain td{background:#ffd280}tr.disabled td{background:#ccc}\
.bad{color:#b00;font-weight:bold}";

pub fn page(shared: &Shared, refresh: Option<String>) -> Answer {
    let views: Vec<ServerView> = shared
        .servers()
        .iter()
        .map(|rt| ServerView::of(rt))
        .collect();
    let failed = shared.failed();
    let refresh = refresh
        .and_then(|r| r.parse::<u32>().ok())
        .filter(|r| *r > 0);
    Answer::Text(
        200,
        "text/html; charset=utf-8",
        render(&views, &failed, refresh),
    )
}

/// HTML-escape text for element content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub fn render(
    servers: &[ServerView],
    failed: &std::collections::BTreeMap<String, String>,
    refresh: Option<u32>,
) -> String {
    let mut h = String::with_capacity(8192);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    if let Some(r) = refresh {
        let _ = write!(h, "<meta http-equiv=\"refresh\" content=\"{r}\">");
    }
    let _ = write!(
        h,
        "<title>betwixt status</title><style>{STYLE}</style></head><body>\
<h1>betwixt {} status</h1><p>pid {} &middot; {} servers &middot; \
<a href=\"?refresh=5\">auto-refresh 5 s</a> &middot; <a href=\"?\">no refresh</a></p>",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        servers.len()
    );
    for (name, why) in failed {
        let _ = write!(
            h,
            "<p class=\"bad\" id=\"failed-{0}\">server {0}: not listening: {1}</p>",
            esc(name),
            esc(why)
        );
    }
    for s in servers {
        server_table(&mut h, s);
    }
    h.push_str("</body></html>\n");
    h
}

fn server_table(h: &mut String, s: &ServerView) {
    let name = esc(&s.name);
    let c = &s.counters;
    let _ = write!(
        h,
        "<table id=\"server-{name}\"><caption>{name} &mdash; {} ({}) &mdash; \
{} active, {} total, {} refused, rx {} B/s, tx {} B/s, {} of {} backends electable</caption>\
<tr><th class=\"l\">backend</th><th class=\"l\">health</th><th>since</th><th>score</th>\
<th class=\"l\">admin</th><th>weight</th><th>prio</th><th>active</th><th>total</th>\
<th>refused</th><th>rx B</th><th>tx B</th><th>rx B/s</th><th>tx B/s</th>\
<th class=\"l\">last check</th></tr>",
        esc(&s.bind),
        s.balance,
        c.active_connections,
        c.total_connections,
        c.refused_connections,
        c.rx_second,
        c.tx_second,
        s.electable(),
        s.backends.len()
    );
    for b in &s.backends {
        backend_row(h, &s.name, b);
    }
    h.push_str("</table>");
}

fn backend_row(h: &mut String, server: &str, b: &BackendView) {
    let health = if b.live { "up" } else { "down" };
    let admin = admin_label(b.admin);
    let class = if b.admin != crate::state::ADMIN_ENABLED {
        admin
    } else {
        health
    };
    let last = b
        .health
        .history
        .back()
        .map(|r| format!("{}: {}", r.cause.label(), r.detail))
        .unwrap_or_else(|| format!("{} (no checks yet)", b.health.kind));
    let since = super::dump::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(b.health.since_ms),
    );
    let c = &b.counters;
    let _ = write!(
        h,
        "<tr class=\"{class}\" id=\"backend-{}-{}\" data-health=\"{health}\" data-admin=\"{admin}\">\
<td class=\"l\">{}{}</td><td class=\"l health\">{health}</td><td>{since}</td><td>{}</td>\
<td class=\"l admin\">{admin}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
        esc(server),
        esc(&b.key),
        esc(&b.key),
        if b.discovered { "" } else { " (removed)" },
        b.score,
        b.weight,
        b.priority,
        c.active_connections,
        c.total_connections,
        c.refused_connections,
        c.rx_total,
        c.tx_total,
        c.rx_second,
        c.tx_second,
        esc(&last)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::Report;
    use crate::metrics::Snapshot;

    fn backend(key: &str, live: bool, admin: u8) -> BackendView {
        BackendView {
            key: key.into(),
            host: "127.0.0.1".into(),
            port: 80,
            priority: 1,
            weight: 1,
            max_connections: 0,
            sni: String::new(),
            live,
            discovered: true,
            admin,
            score: 100,
            counters: Snapshot::default(),
            health: Report::new("ping", live, 0),
        }
    }

    #[test]
    fn shows_states_and_escapes_names() {
        let s = ServerView {
            name: "<web>".into(),
            bind: "127.0.0.1:3000".into(),
            balance: "weight",
            counters: Snapshot::default(),
            backends: vec![
                backend("127.0.0.1:1", true, crate::state::ADMIN_ENABLED),
                backend("127.0.0.1:2", false, crate::state::ADMIN_ENABLED),
                backend("127.0.0.1:3", true, crate::state::ADMIN_DRAIN),
            ],
        };
        let html = render(&[s], &Default::default(), Some(3));
        assert!(html.contains("&lt;web&gt;") && !html.contains("<web>"));
        assert!(html.contains("content=\"3\""));
        assert!(html.contains("data-health=\"down\""));
        assert!(html.contains("class=\"drain\""));
        assert!(html.contains("1 of 3 backends electable"));
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
    }
}

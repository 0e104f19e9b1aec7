//! Prometheus text exposition (format 0.0.4) of [`ServerView`]s. Pure code.
//!
//! Two sets side by side: gobetween's names (all gauges, as gobetween
//! exports them, so existing dashboards keep working) and `betwixt_*`
//! metrics typed and named by Prometheus rules (counters end in `_total`,
//! bytes in `_bytes`, `betwixt_backend_up` always present).

use std::fmt::Write;

use super::view::{ADMIN_LABELS, BackendView, ServerView, admin_label};
use crate::health::Cause;
use crate::health::report::DURATION_BUCKETS;

/// One metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label value escaping: backslash, double quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type ServerValue = fn(&ServerView) -> u64;
type BackendValue = fn(&BackendView) -> u64;

pub fn render(servers: &[ServerView]) -> String {
    let mut out = String::with_capacity(4096);
    gobetween(&mut out, servers);
    betwixt(&mut out, servers);
    out
}

fn server_family(
    out: &mut String,
    servers: &[ServerView],
    name: &str,
    kind: &str,
    help: &str,
    f: ServerValue,
) {
    let mut fam = Family::new(out, name, kind, help);
    for s in servers {
        fam.sample(name, &[("server", &s.name)], f(s));
    }
}

fn backend_family(
    out: &mut String,
    servers: &[ServerView],
    name: &str,
    kind: &str,
    help: &str,
    f: BackendValue,
    gobetween_labels: bool,
) {
    let mut fam = Family::new(out, name, kind, help);
    for s in servers {
        for b in &s.backends {
            let port = b.port.to_string();
            if gobetween_labels {
                let labels = [
                    ("server", s.name.as_str()),
                    ("host", &b.host),
                    ("port", &port),
                ];
                fam.sample(name, &labels, f(b));
            } else {
                fam.sample(name, &[("server", &s.name), ("backend", &b.key)], f(b));
            }
        }
    }
}

fn gobetween(out: &mut String, servers: &[ServerView]) {
    let version = env!("CARGO_PKG_VERSION");
    Family::new(
        out,
        "gobetween_build_info",
        "gauge",
        "Build info (betwixt, gobetween-compatible).",
    )
    .sample(
        "gobetween_build_info",
        &[
            ("version", version),
            ("revision", ""),
            ("branch", ""),
            ("goversion", ""),
        ],
        1,
    );
    let server: [(&str, &str, ServerValue); 6] = [
        (
            "gobetween_server_count",
            "Backends tracked for the server.",
            |s| s.backends.len() as u64,
        ),
        (
            "gobetween_server_active_connections",
            "Active client connections.",
            |s| s.counters.active_connections,
        ),
        ("gobetween_server_rx_total", "Bytes sent to clients.", |s| {
            s.counters.rx_total
        }),
        (
            "gobetween_server_tx_total",
            "Bytes sent to backends.",
            |s| s.counters.tx_total,
        ),
        (
            "gobetween_server_rx_second",
            "Bytes per second sent to clients.",
            |s| s.counters.rx_second,
        ),
        (
            "gobetween_server_tx_second",
            "Bytes per second sent to backends.",
            |s| s.counters.tx_second,
        ),
    ];
    for (name, help, f) in server {
        server_family(out, servers, name, "gauge", help, f);
    }
    let backend: [(&str, &str, BackendValue); 8] = [
        (
            "gobetween_backend_active_connections",
            "Active connections.",
            |b| b.counters.active_connections,
        ),
        (
            "gobetween_backend_refused_connections",
            "Failed connects.",
            |b| b.counters.refused_connections,
        ),
        (
            "gobetween_backend_total_connections",
            "Connections made.",
            |b| b.counters.total_connections,
        ),
        (
            "gobetween_backend_rx_bytes",
            "Bytes read from the backend.",
            |b| b.counters.rx_total,
        ),
        (
            "gobetween_backend_tx_bytes",
            "Bytes written to the backend.",
            |b| b.counters.tx_total,
        ),
        (
            "gobetween_backend_rx_second",
            "Bytes per second read from the backend.",
            |b| b.counters.rx_second,
        ),
        (
            "gobetween_backend_tx_second",
            "Bytes per second written to the backend.",
            |b| b.counters.tx_second,
        ),
        (
            "gobetween_backend_live",
            "1 when the backend is healthy.",
            |b| u64::from(b.live),
        ),
    ];
    for (name, help, f) in backend {
        backend_family(out, servers, name, "gauge", help, f, true);
    }
}

fn betwixt(out: &mut String, servers: &[ServerView]) {
    Family::new(
        out,
        "betwixt_build_info",
        "gauge",
        "Version of the running betwixt.",
    )
    .sample(
        "betwixt_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    let server: [(&str, &str, &str, ServerValue); 7] = [
        (
            "betwixt_server_connections_active",
            "gauge",
            "Open client connections.",
            |s| s.counters.active_connections,
        ),
        (
            "betwixt_server_connections_total",
            "counter",
            "Client connections relayed to a backend.",
            |s| s.counters.total_connections,
        ),
        (
            "betwixt_server_connections_refused_total",
            "counter",
            "Clients turned away (limit, access rules, no backend).",
            |s| s.counters.refused_connections,
        ),
        (
            "betwixt_server_rx_bytes_total",
            "counter",
            "Bytes read from backends and sent to clients.",
            |s| s.counters.rx_total,
        ),
        (
            "betwixt_server_tx_bytes_total",
            "counter",
            "Bytes read from clients and sent to backends.",
            |s| s.counters.tx_total,
        ),
        (
            "betwixt_server_backends",
            "gauge",
            "Backends of the server.",
            |s| s.backends.len() as u64,
        ),
        (
            "betwixt_server_backends_electable",
            "gauge",
            "Backends that are healthy and enabled.",
            |s| s.electable() as u64,
        ),
    ];
    for (name, kind, help, f) in server {
        server_family(out, servers, name, kind, help, f);
    }
    let backend: [(&str, &str, &str, BackendValue); 6] = [
        (
            "betwixt_backend_up",
            "gauge",
            "1 when the health check says up (1 without checks).",
            |b| u64::from(b.live),
        ),
        (
            "betwixt_backend_connections_active",
            "gauge",
            "Open connections.",
            |b| b.counters.active_connections,
        ),
        (
            "betwixt_backend_connections_total",
            "counter",
            "Connections elected to the backend.",
            |b| b.counters.total_connections,
        ),
        (
            "betwixt_backend_connect_errors_total",
            "counter",
            "Failed connects.",
            |b| b.counters.refused_connections,
        ),
        (
            "betwixt_backend_rx_bytes_total",
            "counter",
            "Bytes read from the backend.",
            |b| b.counters.rx_total,
        ),
        (
            "betwixt_backend_tx_bytes_total",
            "counter",
            "Bytes written to the backend.",
            |b| b.counters.tx_total,
        ),
    ];
    for (name, kind, help, f) in backend {
        backend_family(out, servers, name, kind, help, f, false);
    }
    let name = "betwixt_backend_health_score";
    let mut fam = Family::new(out, name, "gauge", "Health score, 0 to 1.");
    for (s, b) in pairs(servers) {
        fam.sample(
            name,
            &[("server", &s.name), ("backend", &b.key)],
            f64::from(b.score) / 100.0,
        );
    }
    admin_states(out, servers);
    checks(out, servers);
    durations(out, servers);
}

fn pairs(servers: &[ServerView]) -> impl Iterator<Item = (&ServerView, &BackendView)> {
    servers
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
}

fn admin_states(out: &mut String, servers: &[ServerView]) {
    let name = "betwixt_backend_admin_state";
    let mut fam = Family::new(
        out,
        name,
        "gauge",
        "Admin state set through the API (1 = current).",
    );
    for (s, b) in pairs(servers) {
        for state in ADMIN_LABELS {
            let v = u8::from(admin_label(b.admin) == state);
            fam.sample(
                name,
                &[("server", &s.name), ("backend", &b.key), ("state", state)],
                v,
            );
        }
    }
}

fn checks(out: &mut String, servers: &[ServerView]) {
    let name = "betwixt_health_checks_total";
    let mut fam = Family::new(
        out,
        name,
        "counter",
        "Health check results by cause (ok = passed).",
    );
    for (s, b) in pairs(servers) {
        for (cause, n) in Cause::ALL.iter().zip(b.health.by_cause) {
            let labels = [
                ("server", s.name.as_str()),
                ("backend", &b.key),
                ("cause", cause.label()),
            ];
            fam.sample(name, &labels, n);
        }
    }
}

fn durations(out: &mut String, servers: &[ServerView]) {
    let name = "betwixt_health_check_duration_seconds";
    let mut fam = Family::new(out, name, "histogram", "Time health checks took.");
    for (s, b) in pairs(servers) {
        let mut cumulative = 0;
        let bounds = DURATION_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()]);
        for (le, n) in bounds.zip(b.health.duration_buckets) {
            cumulative += n;
            let labels = [
                ("server", s.name.as_str()),
                ("backend", &b.key),
                ("le", &le),
            ];
            fam.sample(&format!("{name}_bucket"), &labels, cumulative);
        }
        let labels = [("server", s.name.as_str()), ("backend", &b.key)];
        fam.sample(&format!("{name}_sum"), &labels, b.health.duration_sum);
        fam.sample(&format!("{name}_count"), &labels, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Outcome;
    use crate::health::report::Report;
    use crate::metrics::Snapshot;
    use std::time::Duration;

    fn view() -> Vec<ServerView> {
        let mut health = Report::new("ping", false, 0);
        health.push(
            &Outcome::fail(Cause::Refused, "no"),
            Duration::from_millis(3),
            1,
            false,
            0,
        );
        health.push(
            &Outcome::pass("ok"),
            Duration::from_millis(30),
            2,
            false,
            50,
        );
        let b = BackendView {
            key: "127.0.0.1:80".into(),
            host: "127.0.0.1".into(),
            port: 80,
            priority: 1,
            weight: 1,
            max_connections: 0,
            sni: String::new(),
            live: false,
            discovered: true,
            admin: crate::state::ADMIN_DRAIN,
            score: 50,
            counters: Snapshot {
                total_connections: 5,
                rx_total: 100,
                ..Default::default()
            },
            health,
        };
        vec![ServerView {
            name: "we\"b".into(),
            bind: "127.0.0.1:3000".into(),
            balance: "weight",
            counters: Snapshot {
                active_connections: 2,
                ..Default::default()
            },
            backends: vec![b],
        }]
    }

    #[test]
    fn renders_both_name_sets() {
        let text = render(&view());
        for line in [
            "gobetween_server_active_connections{server=\"we\\\"b\"} 2",
            "gobetween_backend_rx_bytes{server=\"we\\\"b\",host=\"127.0.0.1\",port=\"80\"} 100",
            "gobetween_backend_live{server=\"we\\\"b\",host=\"127.0.0.1\",port=\"80\"} 0",
            "# TYPE betwixt_backend_connections_total counter",
            "betwixt_backend_connections_total{server=\"we\\\"b\",backend=\"127.0.0.1:80\"} 5",
            "betwixt_backend_up{server=\"we\\\"b\",backend=\"127.0.0.1:80\"} 0",
            "betwixt_backend_admin_state{server=\"we\\\"b\",backend=\"127.0.0.1:80\",state=\"drain\"} 1",
            "betwixt_backend_admin_state{server=\"we\\\"b\",backend=\"127.0.0.1:80\",state=\"enabled\"} 0",
            "betwixt_health_checks_total{server=\"we\\\"b\",backend=\"127.0.0.1:80\",cause=\"refused\"} 1",
            "betwixt_backend_health_score{server=\"we\\\"b\",backend=\"127.0.0.1:80\"} 0.5",
            "betwixt_health_check_duration_seconds_bucket{server=\"we\\\"b\",backend=\"127.0.0.1:80\",le=\"0.005\"} 1",
            "betwixt_health_check_duration_seconds_bucket{server=\"we\\\"b\",backend=\"127.0.0.1:80\",le=\"0.05\"} 2",
            "betwixt_health_check_duration_seconds_bucket{server=\"we\\\"b\",backend=\"127.0.0.1:80\",le=\"+Inf\"} 2",
            "betwixt_health_check_duration_seconds_count{server=\"we\\\"b\",backend=\"127.0.0.1:80\"} 2",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn every_sample_belongs_to_a_declared_family() {
        let text = render(&view());
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(declared.iter().any(|d| d == name || d == base), "{line}");
                let counter = text.contains(&format!("# TYPE {name} counter"));
                assert!(!counter || name.ends_with("_total"), "{name}");
            }
        }
    }
}

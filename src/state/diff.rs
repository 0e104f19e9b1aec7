//! Reload as a diff: old servers vs new servers -> explicit operations.
//!
//! Pure code. A server whose listener must change (bind or protocol) is
//! stopped and started again; any other change is applied in place, so its
//! listener and open connections stay.

use std::collections::BTreeMap;

use crate::config::Server;

/// One step of a reload, in the order [`diff`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Close the listener; open connections drain.
    Stop(String),
    /// Swap the server's plan (backends, balance, timeouts...) in place.
    Update(String),
    /// Bind a new listener and start serving.
    Start(String),
}

/// Operations that turn `old` into `new`: every stop first (so a port a
/// removed server frees can be taken by a new one), then updates, then starts.
pub fn diff(old: &BTreeMap<String, Server>, new: &BTreeMap<String, Server>) -> Vec<Op> {
    let mut stops = Vec::new();
    let mut updates = Vec::new();
    let mut starts = Vec::new();
    for (name, before) in old {
        match new.get(name) {
            None => stops.push(Op::Stop(name.clone())),
            Some(after) if needs_new_listener(before, after) => {
                stops.push(Op::Stop(name.clone()));
                starts.push(Op::Start(name.clone()));
            }
            Some(after) if after != before => updates.push(Op::Update(name.clone())),
            Some(_) => {}
        }
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        starts.push(Op::Start(name.clone()));
    }
    stops.into_iter().chain(updates).chain(starts).collect()
}

fn needs_new_listener(a: &Server, b: &Server) -> bool {
    a.bind != b.bind || a.protocol != b.protocol
}

/// Listeners a reload hands over instead of closing and binding again:
/// stopped server -> started server, for a TCP listener (`tcp` or `tls`)
/// on the same address (a renamed server, or `tcp` <-> `tls`). Closing
/// would reset the connections waiting in its accept queue and refuse new
/// ones until the next bind.
pub fn handovers(
    old: &BTreeMap<String, Server>,
    new: &BTreeMap<String, Server>,
    ops: &[Op],
) -> BTreeMap<String, String> {
    let tcp = |s: &Server| s.udp.is_none();
    let mut taken = BTreeMap::new();
    for op in ops {
        let Op::Start(to) = op else { continue };
        let Some(b) = new.get(to).filter(|b| tcp(b)) else {
            continue;
        };
        let from = ops.iter().find_map(|op| match op {
            Op::Stop(from) if !taken.contains_key(from) => old
                .get(from)
                .filter(|a| tcp(a) && a.bind == b.bind)
                .map(|_| from.clone()),
            _ => None,
        });
        if let Some(from) = from {
            taken.insert(from, to.clone());
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::test_server;

    fn servers(list: &[(&str, Server)]) -> BTreeMap<String, Server> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn unchanged_servers_produce_nothing() {
        let a = servers(&[("web", test_server("127.0.0.1:3000"))]);
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn backend_balance_and_timeout_changes_are_in_place() {
        let old = servers(&[("web", test_server("127.0.0.1:3000"))]);
        let mut s = test_server("127.0.0.1:3000");
        s.balance = crate::balance::BalanceKind::LeastConn;
        s.client_idle_timeout = Some(std::time::Duration::from_secs(5));
        let new = servers(&[("web", s)]);
        assert_eq!(diff(&old, &new), vec![Op::Update("web".into())]);
    }

    #[test]
    fn bind_change_restarts_the_listener() {
        let old = servers(&[("web", test_server("127.0.0.1:3000"))]);
        let new = servers(&[("web", test_server("127.0.0.1:3001"))]);
        assert_eq!(
            diff(&old, &new),
            vec![Op::Stop("web".into()), Op::Start("web".into())]
        );
    }

    #[test]
    fn a_renamed_server_or_a_tcp_tls_switch_hands_its_listener_over() {
        let mut tls = test_server("127.0.0.1:3001");
        tls.protocol = crate::config::Protocol::Tls;
        let old = servers(&[
            ("a", test_server("127.0.0.1:3000")),
            ("t", test_server("127.0.0.1:3001")),
            ("moved", test_server("127.0.0.1:3002")),
        ]);
        let new = servers(&[
            ("b", test_server("127.0.0.1:3000")),
            ("t", tls),
            ("moved", test_server("127.0.0.1:3003")),
        ]);
        let ops = diff(&old, &new);
        let h = handovers(&old, &new, &ops);
        let want: BTreeMap<String, String> = [("a", "b"), ("t", "t")]
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        assert_eq!(h, want);
    }

    #[test]
    fn udp_listeners_and_unchanged_servers_are_not_handed_over() {
        let mut udp = test_server("127.0.0.1:3000");
        udp.protocol = crate::config::Protocol::Udp;
        udp.udp = Some(crate::config::Udp {
            max_requests: 0,
            max_responses: 0,
            transparent: false,
            max_sessions: 1,
        });
        let old = servers(&[("a", test_server("127.0.0.1:3000"))]);
        let new = servers(&[("b", udp)]);
        let ops = diff(&old, &new);
        assert!(handovers(&old, &new, &ops).is_empty());
        assert!(handovers(&old, &old, &diff(&old, &old)).is_empty());
    }

    #[test]
    fn stops_come_before_starts_so_ports_can_move() {
        let old = servers(&[
            ("a", test_server("127.0.0.1:3000")),
            ("keep", test_server("127.0.0.1:3002")),
        ]);
        let mut changed = test_server("127.0.0.1:3002");
        changed.max_connections = 7;
        let new = servers(&[("b", test_server("127.0.0.1:3000")), ("keep", changed)]);
        assert_eq!(
            diff(&old, &new),
            vec![
                Op::Stop("a".into()),
                Op::Update("keep".into()),
                Op::Start("b".into())
            ]
        );
    }
}

use super::*;
use std::net::Ipv4Addr;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn addrs(list: &[u8]) -> Addrs {
    list.iter().map(|&l| ip(l)).collect()
}

fn ok(list: &[u8]) -> Result<Vec<IpAddr>, String> {
    Ok(list.iter().map(|&l| ip(l)).collect())
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// A cache that learnt `host` -> 127.0.0.1 at `t0`.
fn learnt(host: &str, t0: Instant) -> Cache {
    let mut c = Cache::default();
    assert_eq!(c.get(host, t0), Decision::Lookup);
    assert_eq!(c.done(host, ok(&[1]), t0), None);
    c
}

#[test]
fn first_use_looks_up_once_and_others_wait() {
    let t0 = Instant::now();
    let mut c = Cache::default();
    assert_eq!(c.get("app", t0), Decision::Lookup);
    assert_eq!(c.get("app", t0), Decision::Wait);
    assert_eq!(c.get("app", t0), Decision::Wait);
    // Another name is another lookup.
    assert_eq!(c.get("db", t0), Decision::Lookup);
    c.done("app", ok(&[1, 2]), t0);
    assert_eq!(c.get("app", t0), Decision::Use(addrs(&[1, 2])));
}

#[test]
fn fresh_answers_are_used_without_lookups() {
    let t0 = Instant::now();
    let mut c = learnt("app", t0);
    for s in 0..FRESH.as_secs() {
        assert_eq!(c.get("app", secs(t0, s)), Decision::Use(addrs(&[1])));
    }
}

#[test]
fn stale_answer_is_used_and_refreshed_once() {
    let t0 = Instant::now();
    let mut c = learnt("app", t0);
    let t = t0 + FRESH;
    assert_eq!(c.get("app", t), Decision::UseAndRefresh(addrs(&[1])));
    // The refresh is in flight: the others use the stale answer.
    assert_eq!(c.get("app", t), Decision::Use(addrs(&[1])));
    assert_eq!(
        c.get("app", secs(t, 2)),
        Decision::Use(addrs(&[1])),
        "a slow refresh is not started twice"
    );
    let note = c.done("app", ok(&[3]), secs(t, 2));
    assert!(matches!(note, Some(Note::Debug(_))), "{note:?}");
    // The new answer is fresh from when it came.
    assert_eq!(c.get("app", secs(t, 3)), Decision::Use(addrs(&[3])));
    let again = secs(t, 2) + FRESH;
    assert_eq!(c.get("app", again), Decision::UseAndRefresh(addrs(&[3])));
}

#[test]
fn failed_refresh_serves_stale_and_warns_once_per_period() {
    let t0 = Instant::now();
    let mut c = learnt("app", t0);
    let t = t0 + FRESH;
    assert!(matches!(c.get("app", t), Decision::UseAndRefresh(_)));
    let note = c.done("app", Err("timed out".into()), t);
    let Some(Note::Warn(w)) = note else {
        panic!("{note:?}")
    };
    assert!(w.contains("app: timed out; using the last answer"), "{w}");
    // Backing off: the stale answer, no lookup.
    assert_eq!(c.get("app", t), Decision::Use(addrs(&[1])));
    // Then one retry per RETRY, each failure quiet within WARN_EVERY.
    let mut at = t;
    let mut warnings = 0;
    while at < t + WARN_EVERY * 2 {
        at += RETRY;
        assert_eq!(c.get("app", at), Decision::UseAndRefresh(addrs(&[1])));
        assert_eq!(c.get("app", at), Decision::Use(addrs(&[1])));
        match c.done("app", Err("timed out".into()), at) {
            Some(Note::Warn(_)) => warnings += 1,
            Some(Note::Debug(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(warnings, 2, "one per WARN_EVERY");
    // Recovery is logged once.
    assert!(matches!(
        c.get("app", at + RETRY),
        Decision::UseAndRefresh(_)
    ));
    let note = c.done("app", ok(&[1]), at + RETRY);
    assert!(matches!(note, Some(Note::Info(ref i)) if i.contains("resolves again")));
}

#[test]
fn stale_answer_expires_after_the_stale_window() {
    let t0 = Instant::now();
    let mut c = learnt("app", t0);
    let last = t0 + FRESH + SERVE_STALE - Duration::from_millis(1);
    assert!(matches!(c.get("app", last), Decision::UseAndRefresh(_)));
    c.done("app", Err("refused".into()), last);
    // Expired: wait for a lookup (after the retry pause).
    let expired = t0 + FRESH + SERVE_STALE;
    assert_eq!(c.get("app", expired), Decision::Fail("refused".into()));
    let later = last + RETRY;
    assert_eq!(c.get("app", later), Decision::Lookup);
    assert_eq!(c.get("app", later), Decision::Wait);
    let note = c.done("app", Err("refused".into()), later);
    assert!(
        matches!(note, Some(Note::Debug(ref d)) if d.contains("no usable answer")),
        "{note:?}"
    );
    assert_eq!(c.get("app", later), Decision::Fail("refused".into()));
}

#[test]
fn no_answer_ever_fails_fast_then_retries() {
    let t0 = Instant::now();
    let mut c = Cache::default();
    assert_eq!(c.get("app", t0), Decision::Lookup);
    let note = c.done("app", Err("not found".into()), t0);
    assert!(matches!(note, Some(Note::Warn(_))), "{note:?}");
    // Connections within RETRY fail with that error, without lookups.
    assert_eq!(c.get("app", t0), Decision::Fail("not found".into()));
    assert_eq!(c.get("app", t0 + RETRY), Decision::Lookup);
    // An empty answer is a failure too.
    assert_eq!(
        c.done("app", ok(&[]), t0 + RETRY),
        Some(Note::Debug(
            "resolve app: no address; no usable answer, connections to it fail".into()
        ))
    );
    assert_eq!(
        c.get("app", t0 + RETRY),
        Decision::Fail("no address".into())
    );
}

#[test]
fn unused_entries_are_evicted() {
    let t0 = Instant::now();
    let mut c = learnt("old", t0);
    let _ = c.get("busy", t0);
    c.done("busy", ok(&[2]), t0);
    // "busy" is used, "old" is not.
    let mut t = t0;
    while t < t0 + EVICT_AFTER + SWEEP_EVERY {
        t += SWEEP_EVERY;
        let _ = c.get("busy", t);
    }
    assert_eq!(c.len(), 1);
    assert_eq!(c.get("old", t), Decision::Lookup, "forgotten");
}

#[test]
fn size_is_bounded_by_evicting_the_least_recently_used() {
    let t0 = Instant::now();
    let mut c = Cache::with_capacity(3);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let t = secs(t0, i as u64);
        assert_eq!(c.get(name, t), Decision::Lookup);
        c.done(name, ok(&[i as u8]), t);
    }
    let _ = c.get("a", secs(t0, 3)); // b is now the least recently used
    assert_eq!(c.get("d", secs(t0, 4)), Decision::Lookup);
    assert_eq!(c.len(), 3);
    assert!(matches!(c.get("a", secs(t0, 4)), Decision::Use(_)));
    assert!(matches!(c.get("c", secs(t0, 4)), Decision::Use(_)));
    assert_eq!(c.get("b", secs(t0, 4)), Decision::Lookup, "evicted");
}

#[test]
fn entries_with_a_lookup_in_flight_are_kept() {
    let t0 = Instant::now();
    let mut c = Cache::with_capacity(1);
    assert_eq!(c.get("a", t0), Decision::Lookup);
    // Full of in-flight lookups: grows rather than losing "a"'s waiters.
    assert_eq!(c.get("b", t0), Decision::Lookup);
    assert_eq!(c.len(), 2);
    assert_eq!(c.get("a", t0 + EVICT_AFTER * 2), Decision::Wait);
    assert!(c.done("a", ok(&[1]), t0).is_none());
}

#[test]
fn a_name_never_gets_another_names_answer() {
    let t0 = Instant::now();
    let mut c = learnt("app", t0);
    assert_eq!(c.get("app2", t0), Decision::Lookup);
    assert_eq!(
        c.done("gone", ok(&[9]), t0),
        None,
        "unknown names are ignored"
    );
    assert_eq!(c.get("app2", t0), Decision::Wait);
}

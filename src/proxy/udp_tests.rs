use super::*;
use crate::proxy::pump::COARSE_SLACK_MS;
use crate::proxy::udp_limits::idle_limit_ms;

/// No limit set: each test names only the ones it exercises.
const UNLIMITED: Limits = Limits {
    client_idle: None,
    backend_idle: None,
    max_responses: 0,
};

/// What a session saw; as many requests as `responses` (no reply owed).
fn seen(last_client: u64, last_backend: u64, responses: u64, detached: bool) -> Seen {
    Seen {
        last_client,
        last_backend,
        requests: responses,
        responses,
        detached,
    }
}

#[test]
fn client_idle_counts_from_the_last_client_datagram() {
    let l = Limits {
        client_idle: Some(100),
        ..UNLIMITED
    };
    assert_eq!(l.end(&seen(50, 0, 0, false), 120), Verdict::WaitUntil(150));
    assert_eq!(
        l.end(&seen(50, 0, 0, false), 150),
        Verdict::End("client_idle_timeout")
    );
}

#[test]
fn backend_idle_counts_from_the_last_reply_or_the_start() {
    let l = Limits {
        backend_idle: Some(100),
        ..UNLIMITED
    };
    assert_eq!(l.end(&seen(90, 0, 0, false), 99), Verdict::WaitUntil(100));
    assert_eq!(
        l.end(&seen(90, 0, 0, false), 100),
        Verdict::End("backend_idle_timeout")
    );
    assert_eq!(l.end(&seen(90, 80, 1, false), 150), Verdict::WaitUntil(180));
}

#[test]
fn max_responses_ends_at_once() {
    let l = Limits {
        client_idle: Some(100),
        max_responses: 2,
        ..UNLIMITED
    };
    assert_eq!(l.end(&seen(0, 0, 1, false), 1), Verdict::WaitUntil(100));
    assert_eq!(
        l.end(&seen(0, 0, 2, false), 1),
        Verdict::End("max_responses")
    );
}

#[test]
fn a_full_session_waits_a_bounded_time_for_the_replies_it_owes() {
    let owed = |responses, requests, last| Seen {
        requests,
        ..seen(0, last, responses, false)
    };
    let l = Limits {
        max_responses: 1,
        ..UNLIMITED
    };
    assert!(l.full(&owed(1, 3, 10)));
    assert!(!l.full(&owed(0, 3, 10)));
    // One reply of three: wait (DETACHED_WAIT from the last reply).
    let wait = DETACHED_WAIT.as_millis() as u64;
    assert_eq!(l.end(&owed(1, 3, 10), 20), Verdict::WaitUntil(10 + wait));
    assert_eq!(l.end(&owed(2, 3, 10), 20), Verdict::WaitUntil(10 + wait));
    assert_eq!(l.end(&owed(3, 3, 10), 20), Verdict::End("max_responses"));
    assert_eq!(
        l.end(&owed(1, 3, 10), 10 + wait),
        Verdict::End("max_responses")
    );
    // More replies than requests: nothing owed.
    assert_eq!(l.end(&owed(2, 1, 10), 20), Verdict::End("max_responses"));
    // backend_idle_timeout bounds the wait instead.
    let l = Limits {
        backend_idle: Some(100),
        max_responses: 1,
        ..UNLIMITED
    };
    assert_eq!(l.end(&owed(1, 2, 10), 20), Verdict::WaitUntil(110));
    assert_eq!(
        l.end(&owed(1, 2, 10), 110),
        Verdict::End("backend_idle_timeout")
    );
}

#[test]
fn the_earliest_deadline_is_the_next_look() {
    let l = Limits {
        client_idle: Some(100),
        backend_idle: Some(30),
        ..UNLIMITED
    };
    assert_eq!(l.end(&seen(0, 0, 0, false), 10), Verdict::WaitUntil(30));
}

#[test]
fn a_detached_session_without_reply_limits_waits_a_bounded_time() {
    let l = UNLIMITED;
    assert_eq!(
        l.end(&seen(0, 0, 0, false), 1_000_000),
        Verdict::WaitUntil(u64::MAX)
    );
    let wait = DETACHED_WAIT.as_millis() as u64;
    assert_eq!(
        l.end(&seen(5, 0, 0, true), 10),
        Verdict::WaitUntil(5 + wait)
    );
    assert_eq!(
        l.end(&seen(5, 0, 0, true), 5 + wait),
        Verdict::End("max_requests")
    );
}

#[test]
fn the_cap_fits_the_descriptor_limit() {
    assert_eq!(session_cap(10_000, Some(1024)), 960);
    assert_eq!(session_cap(100, Some(1024)), 100);
    assert_eq!(session_cap(100, None), 100);
    assert_eq!(session_cap(100, Some(10)), 1);
}

#[test]
fn idle_limits_get_one_coarse_tick_of_slack() {
    assert_eq!(idle_limit_ms(None), None);
    assert_eq!(
        idle_limit_ms(Some(Duration::from_millis(1500))),
        Some(1500 + COARSE_SLACK_MS)
    );
    assert_eq!(idle_limit_ms(Some(Duration::MAX)), Some(u64::MAX));
    let days = Duration::from_secs(u64::MAX / 1000 + 1);
    assert_eq!(idle_limit_ms(Some(days)), Some(u64::MAX));
}

#[test]
fn nofile_is_read_once_per_second() {
    let mut c = NofileCache::default();
    let mut reads = 0;
    let mut read = |v: u64| {
        reads += 1;
        Some(v)
    };
    assert_eq!(c.get(5_000, || read(100)), Some(100));
    assert_eq!(c.get(5_999, || read(200)), Some(100));
    assert_eq!(c.get(6_000, || read(300)), Some(300));
    assert_eq!(c.get(6_500, || read(400)), Some(300));
    assert_eq!(reads, 2);
}

#[test]
fn nofile_cache_rereads_when_the_clock_goes_back() {
    let mut c = NofileCache::default();
    assert_eq!(c.get(5_000, || None), None);
    // An earlier `now` (saturating): no re-read until a second past the read.
    assert_eq!(c.get(4_000, || Some(7)), None);
    assert_eq!(c.get(6_000, || Some(8)), Some(8));
}

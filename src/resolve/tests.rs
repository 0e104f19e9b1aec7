//! The resolver with an injected lookup that counts its calls, on a paused
//! clock (every wait is virtual, so the tests take milliseconds).

use super::*;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A lookup that takes `delay`, counts its calls and answers from `answer`.
fn counting(
    delay: Duration,
    answer: impl Fn(usize) -> io::Result<Vec<IpAddr>> + Send + Sync + 'static,
) -> (Lookup, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let answer = Arc::new(answer);
    let lookup: Lookup = Arc::new(move |_host: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let answer = Arc::clone(&answer);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer(n)
        })
    });
    (lookup, calls)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_lookup() {
    let (lookup, calls) = counting(Duration::from_millis(100), |_| Ok(vec![ip(1), ip(2)]));
    let r = Arc::new(Resolver::new(lookup));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let r = Arc::clone(&r);
        tasks.push(tokio::spawn(async move { r.resolve("app").await }));
    }
    for t in tasks {
        let addrs = t.await.unwrap().unwrap();
        assert_eq!(&*addrs, &[ip(1), ip(2)]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn connections_do_not_resolve_each_time() {
    let (lookup, calls) = counting(Duration::from_millis(10), |n| Ok(vec![ip(n as u8 + 1)]));
    let r = Resolver::new(lookup);
    // A connection every 100 ms for 20 s: one lookup, then one refresh
    // per FRESH period, each served from the cache meanwhile.
    for _ in 0..200 {
        assert!(r.resolve("app").await.is_ok());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = calls.load(Ordering::SeqCst);
    assert!((4..=5).contains(&n), "{n} lookups for 200 connections");
    // The refreshed answer is what later connections get.
    assert_eq!(&*r.resolve("app").await.unwrap(), &[ip(n as u8)]);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_strand_the_others() {
    let (lookup, calls) = counting(Duration::from_millis(500), |_| Ok(vec![ip(7)]));
    let r = Arc::new(Resolver::new(lookup));
    let impatient = tokio::time::timeout(Duration::from_millis(50), r.resolve("app")).await;
    assert!(impatient.is_err(), "timed out");
    let addrs = tokio::time::timeout(Duration::from_secs(2), r.resolve("app"))
        .await
        .expect("the lookup in flight ends")
        .unwrap();
    assert_eq!(&*addrs, &[ip(7)]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_fail_fast_then_stale_answers_are_served() {
    let (lookup, calls) = counting(Duration::from_millis(10), |n| match n {
        0 => Err(io::Error::other("server failure")),
        1 => Ok(vec![ip(1)]),
        _ => Err(io::Error::other("server failure")),
    });
    let r = Resolver::new(lookup);
    let e = r.resolve("app").await.unwrap_err();
    assert_eq!(e.to_string(), "resolve app: server failure");
    // Within the retry pause: the same error, no lookup.
    assert!(r.resolve("app").await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(cache::RETRY).await;
    assert_eq!(&*r.resolve("app").await.unwrap(), &[ip(1)]);
    // The resolver fails from now on: the last answer is served until the
    // stale window ends, with one lookup per RETRY at most.
    let start = tokio::time::Instant::now();
    let window = cache::FRESH + cache::SERVE_STALE;
    while start.elapsed() < window - Duration::from_secs(1) {
        assert_eq!(&*r.resolve("app").await.unwrap(), &[ip(1)]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let n = calls.load(Ordering::SeqCst);
    let most = 2 + window.as_secs() as usize / cache::RETRY.as_secs() as usize;
    assert!(n <= most, "{n} lookups");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(r.resolve("app").await.is_err(), "expired");
}

#[tokio::test(start_paused = true)]
async fn ip_literals_are_not_looked_up_nor_cached() {
    let (lookup, calls) = counting(Duration::from_millis(10), |_| Ok(vec![ip(9)]));
    let r = Resolver::new(lookup);
    let v6: IpAddr = "::1".parse().unwrap();
    for (host, want) in [("127.0.0.2", ip(2)), ("::1", v6), ("[::1]", v6)] {
        assert_eq!(&*r.resolve(host).await.unwrap(), &[want], "{host}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(r.inner.lock().cache.is_empty());
}

#[test]
fn ip_literal_tells_addresses_from_names() {
    let v6: IpAddr = "fe80::1".parse().unwrap();
    assert_eq!(ip_literal("127.0.0.1"), Some(ip(1)));
    assert_eq!(ip_literal("fe80::1"), Some(v6));
    assert_eq!(ip_literal("[fe80::1]"), Some(v6));
    for name in [
        "app.test",
        "",
        "[",
        "[127.0.0.1",
        "[app]",
        "1.2.3",
        "::1]",
        "[::1]:53",
    ] {
        assert_eq!(ip_literal(name), None, "{name}");
    }
}

/// The real lookup (`localhost` only: the machine's resolver may be
/// unreachable, and `localhost` comes from /etc/hosts or glibc itself).
#[tokio::test]
async fn system_lookup_resolves_localhost() {
    let addrs = tokio::time::timeout(Duration::from_secs(10), system_lookup()("localhost".into()))
        .await
        .expect("bounded")
        .unwrap();
    assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
    assert!(!addrs.is_empty());
}

/// A lookup cancelled with its runtime (a test's, a one-shot `check`'s)
/// leaves no name waiting for it forever.
#[test]
fn a_lookup_dropped_with_its_runtime_is_started_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let lookup: Lookup = Arc::new(move |_host: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n == 0 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(vec![ip(3)])
        })
    });
    let r = Arc::new(Resolver::new(lookup));
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let first = runtime();
    let waiting = first.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), r.resolve("app")).await
    });
    assert!(waiting.is_err(), "the first lookup hangs");
    drop(first);
    let addrs = runtime()
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), r.resolve("app")).await });
    assert_eq!(&*addrs.expect("not stranded").unwrap(), &[ip(3)]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

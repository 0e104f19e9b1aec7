//! Bounded fuzzing of what checks read from backends: probe replies
//! (prefix and regexp), HTTP check verdicts, ICMP replies, exec output,
//! script `#!` lines, and the `betwixt check URL` parser.

use super::*;
use crate::config::{BytesPattern, HttpCheck, ProbeExpect};
use crate::fuzz;
use crate::http::Response;

#[test]
fn fuzz_probe_replies() {
    let expects = [
        ProbeExpect::StartsWith(b"+PONG".to_vec()),
        ProbeExpect::StartsWith(Vec::new()),
        ProbeExpect::Regexp(BytesPattern(
            regex::bytes::Regex::new(r"^(?-u)\+PONG\r?\n|\xff{3,}|OK \d+$").expect("regexp"),
        )),
    ];
    let samples: &[&[u8]] = &[b"+PONG\r\n", b"OK 200", b"\xff\xff\xff\xff", b""];
    let mut i = 0;
    fuzz::run("probe reply", 41, 1500, samples, |got| {
        i += 1;
        // A reply is at most one buffer.
        let got = &got[..got.len().min(probe::MAX_RECV)];
        let o = probe::judge(&expects[i % expects.len()], got);
        assert!(!o.detail.is_empty());
    });
}

fn http_check(contains: Option<&str>, ranges: Vec<(u16, u16)>) -> HttpCheck {
    HttpCheck {
        path: "/".into(),
        method: "GET".into(),
        headers: Default::default(),
        host: None,
        tls: false,
        insecure_skip_verify: false,
        expected_status: ranges,
        contains: contains.map(String::from),
    }
}

#[test]
fn fuzz_http_verdicts() {
    let checks = [
        http_check(Some("ok"), vec![(200, 399)]),
        http_check(Some(""), vec![]),
        http_check(None, vec![(0, 0), (999, 65535)]),
        http_check(Some("é\u{0}"), vec![(204, 204)]),
    ];
    let mut rng = fuzz::Rng::new(42);
    fuzz::run(
        "http verdict",
        43,
        1000,
        &[b"ok", b"{\"status\":\"ok\"}"],
        |body| {
            let resp = Response {
                status: rng.next_u64() as u16,
                reason: String::new(),
                headers: Vec::new(),
                body: body.to_vec(),
                truncated: rng.one_in(2),
            };
            let o = http::judge(rng.pick(&checks), &resp);
            assert!(!o.detail.is_empty());
        },
    );
}

#[test]
fn http_contains_is_linear() {
    // `contains` compared every window of the body with the whole needle:
    // a 1 MiB body and a long needle that almost matches everywhere cost
    // minutes of one runtime thread (a check's timeout cannot stop it).
    let needle = format!("{}b", "a".repeat(200_000));
    let check = http_check(Some(&needle), vec![]);
    let resp = Response {
        status: 200,
        reason: String::new(),
        headers: Vec::new(),
        body: vec![b'a'; 1 << 20],
        truncated: false,
    };
    let start = std::time::Instant::now();
    let o = http::judge(&check, &resp);
    assert_eq!(o.verdict, Verdict::Fail);
    assert!(start.elapsed() < fuzz::CASE_LIMIT, "{:?}", start.elapsed());
}

#[test]
fn fuzz_icmp_replies() {
    use icmp::packet::{Kind, echo_request, parse_reply};
    let mut v4 = vec![
        0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    let mut reply = echo_request(false, 0x4242, 7, 99);
    reply[0] = 0;
    v4.extend_from_slice(&reply);
    let mut v6 = echo_request(true, 0x4242, 7, 99);
    v6[0] = 129;
    let long_ihl = {
        let mut p = v4.clone();
        p[0] = 0x4f;
        p
    };
    let samples: &[&[u8]] = &[&v4, &reply, &v6, &long_ihl];
    let mut n = 0u32;
    fuzz::run("icmp reply", 44, 2000, samples, |buf| {
        n += 1;
        for v6 in [false, true] {
            for kind in [Kind::Raw, Kind::Ping] {
                if let Some(seq) = parse_reply(v6, kind, buf, 0x4242, 99) {
                    n = n.wrapping_add(u32::from(seq));
                }
            }
        }
    });
    assert!(n > 0);
}

#[test]
fn fuzz_exec_output() {
    use process::{Finished, Status};
    let mut rng = fuzz::Rng::new(45);
    fuzz::run(
        "exec output",
        46,
        1000,
        &[b"1", b"0\n", "é".as_bytes()],
        |out| {
            let status = *rng.pick(&[
                Status::Exited(0),
                Status::Exited(-1),
                Status::Exited(i32::MAX),
                Status::Signaled(i32::MIN),
            ]);
            let cut = out.len().min(OUTPUT_CAP);
            let done = Finished {
                status,
                stdout: out[..cut].to_vec(),
                stdout_total: out.len(),
                stderr: out[cut..].to_vec(),
            };
            let o = exec::judge(&done, Some("1"), rng.one_in(2).then_some("0\n"));
            if let Some(text) = &o.output {
                assert!(text.len() <= OUTPUT_CAP, "{}", text.len());
            }
        },
    );
}

#[test]
fn fuzz_script_lines() {
    let samples = [
        "#!/bin/bash -e\necho",
        "#!  \n",
        "#!/usr/bin/env  python3 -u\n",
        "exit 0",
    ];
    fuzz::run_str("script #!", 47, 1000, &samples, |t| {
        let (prog, arg) = script::interpreter(t);
        assert!(!prog.is_empty(), "{t:?}");
        assert!(!prog.contains('\n') && !arg.is_some_and(|a| a.contains('\n')));
    });
}

#[test]
fn a_check_url_names_a_host() {
    for url in ["https://]/", "tcp://]:80", "http://[]/", "icmp://a b"] {
        assert!(url::parse(url, &url::Options::default()).is_err(), "{url}");
    }
    for url in ["https://[::1]/", "tcp://a-b.example:80", "icmp://127.0.0.1"] {
        assert!(url::parse(url, &url::Options::default()).is_ok(), "{url}");
    }
}

#[test]
fn fuzz_check_urls() {
    let samples = [
        "http://127.0.0.1:8080/health?x=1",
        "https://[::1]/",
        "tcp://127.0.0.1:22",
        "udp://[::1]:53",
        "icmp://127.0.0.1",
        "HTTP://h",
    ];
    let opts = [
        url::Options::default(),
        url::Options {
            insecure: true,
            send: Some(r"\x00\xff".into()),
            expect: Some(r"\u12".into()),
        },
        url::Options {
            insecure: false,
            send: Some("ping".into()),
            expect: Some("pong".into()),
        },
    ];
    let mut i = 0;
    fuzz::run_str("check url", 48, 1000, &samples, |t| {
        i += 1;
        if let Ok((_, target)) = url::parse(t, &opts[i % opts.len()]) {
            assert!(!target.host.is_empty(), "{t:?} -> {target:?}");
        }
    });
}

//! Bounded, deterministic fuzzing for unit tests (stable Rust, no
//! dependency): a fixed-seed xorshift generator, mutations of valid samples
//! (bit flips, truncation, duplication, splicing, boundary numbers, long
//! runs, deep nesting, invalid UTF-8) and a driver that runs a parser over
//! a fixed number of cases, names the input of a panic, and fails a case
//! that takes too long.
//!
//! Every parser of untrusted bytes or text has a `fuzz_*` test next to its
//! own tests that calls [`run`] (see docs/ARCHITECTURE.md, "Untrusted
//! input"). A failure prints the case's seed and input, so it can be turned
//! into a plain regression test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// xorshift64*: small, fast, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Tokens that break parsers: boundary numbers, special floats, escapes,
/// separators, a BOM, a NUL, invalid UTF-8.
pub const TOKENS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"-0",
    b"1e308",
    b"-1e308",
    b"1e999",
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"0.0000000000000000000001",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"340282366920938463463374607431768211456",
    b"99999999999999999999999999999999999999999999",
    b"0x7fffffff",
    b"\"",
    b"'",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"${",
    b"}",
    b"${HOME}",
    b"[",
    b"]",
    b"{",
    b"=",
    b":",
    b"::",
    b".",
    b"..",
    b",",
    b";",
    b"/",
    b"%",
    b"%zz",
    b"%00",
    b"*",
    b"#",
    b" ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\0",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\xce\xbc",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"[::1]",
    b"[fe80::1%eth0]",
    b"127.0.0.1",
    b"::ffff:1.2.3.4",
    b"0.0.0.0/0",
    b"/129",
    b"/33",
];

/// Bytes that open a nesting level, for deep-nesting cases.
const OPENERS: &[&[u8]] = &[b"[", b"{\"a\":", b"a=[", b"(", b"[[", b"{"];

/// One input derived from `samples` (or random bytes when there are none,
/// and now and then anyway). Lengths stay bounded (at most about 300 KB).
pub fn input(rng: &mut Rng, samples: &[&[u8]]) -> Vec<u8> {
    if samples.is_empty() || rng.one_in(16) {
        let max = if rng.one_in(8) { 4096 } else { 64 };
        let len = rng.below(max);
        return rng.bytes(len);
    }
    let mut data = rng.pick(samples).to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate(rng, &mut data, samples);
    }
    data
}

/// Apply one random mutation to `data`.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, samples: &[&[u8]]) {
    let len = data.len();
    match rng.below(13) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next_u64() as u8;
        }
        2 => data.truncate(rng.below(len + 1)),
        3 if len > 0 => {
            // Delete a range.
            let a = rng.below(len);
            let b = a + rng.below(len - a + 1);
            data.drain(a..b);
        }
        4 if len > 0 => {
            // Duplicate a range in place.
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64)).min(len);
            let copy = data[a..b].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, copy);
        }
        5 if !samples.is_empty() => {
            // Splice: a prefix of this one, a suffix of another sample.
            let other = rng.pick(samples);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 | 7 => {
            let token = rng.pick(TOKENS);
            let at = rng.below(len + 1);
            data.splice(at..at, token.iter().copied());
        }
        8 => replace_number(rng, data),
        9 if len > 0 => {
            // A long run: one range repeated up to ~64 KB.
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            let unit = data[a..b].to_vec();
            let times = 1 + rng.below(65_536 / unit.len().max(1));
            let run: Vec<u8> = unit
                .iter()
                .copied()
                .cycle()
                .take(unit.len() * times)
                .collect();
            data.splice(a..a, run);
        }
        10 => {
            // Deep nesting at a random place.
            let opener = rng.pick(OPENERS);
            let depth = 1 + rng.below(4000);
            let at = rng.below(len + 1);
            let deep: Vec<u8> = opener
                .iter()
                .copied()
                .cycle()
                .take(opener.len() * depth)
                .collect();
            data.splice(at..at, deep);
        }
        11 if len > 0 => {
            // Swap two bytes.
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let junk = rng.bytes(n);
            data.splice(at..at, junk);
        }
    }
    data.truncate(300_000);
}

/// Replace a run of digits with a boundary number.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let a = *rng.pick(&starts);
    let b = a + data[a..].iter().take_while(|c| c.is_ascii_digit()).count();
    let numbers = &TOKENS[..26];
    data.splice(a..b, rng.pick(numbers).iter().copied());
}

/// `BETWIXT_FUZZ_SCALE=N` runs N times the cases, from seeds moved by
/// `BETWIXT_FUZZ_SEED` (for a longer search by hand; the default run is
/// fixed and short).
fn scaled(seed: u64, cases: usize) -> (u64, usize) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let scale = env("BETWIXT_FUZZ_SCALE").unwrap_or(1).max(1);
    let shift = env("BETWIXT_FUZZ_SEED").unwrap_or(0);
    (
        seed.wrapping_add(shift.wrapping_mul(1_000_003)),
        cases.saturating_mul(scale as usize),
    )
}

/// The longest a single case may take (debug build, shared machine).
pub const CASE_LIMIT: Duration = Duration::from_secs(2);

/// Run `check` on `cases` inputs from seed `seed`. A panic fails the test
/// naming the case and its input; so does a case slower than
/// [`CASE_LIMIT`] (a hang or a runaway loop).
pub fn run(name: &str, seed: u64, cases: usize, samples: &[&[u8]], mut check: impl FnMut(&[u8])) {
    let (seed, cases) = scaled(seed, cases);
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let data = input(&mut rng, samples);
        let start = Instant::now();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            panic!(
                "{name}: case {case} (seed {seed}) panicked: {why}\ninput ({} bytes): {}",
                data.len(),
                show(&data)
            );
        }
        let took = start.elapsed();
        assert!(
            took < CASE_LIMIT,
            "{name}: case {case} (seed {seed}) took {took:?}\ninput ({} bytes): {}",
            data.len(),
            show(&data)
        );
    }
}

/// [`run`] for parsers of text: the input as (lossy) UTF-8.
pub fn run_str(name: &str, seed: u64, cases: usize, samples: &[&str], mut check: impl FnMut(&str)) {
    let samples: Vec<&[u8]> = samples.iter().map(|s| s.as_bytes()).collect();
    run(name, seed, cases, &samples, |data| {
        check(&String::from_utf8_lossy(data))
    });
}

/// One of [`TOKENS`] as text.
fn token(rng: &mut Rng) -> String {
    let t = *rng.pick::<&[u8]>(TOKENS);
    String::from_utf8_lossy(t).into_owned()
}

/// A JSON value from the boundary set: numbers at type limits, special
/// strings, long strings, deep nesting, wrong types.
pub fn json_value(rng: &mut Rng) -> serde_json::Value {
    use serde_json::{Value, json};
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => json!(*rng.pick(&[0i64, -1, 1, 255, 256, 65535, 65536, i64::MIN, i64::MAX])),
        3 => json!(*rng.pick(&[u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX])),
        4 => json!(*rng.pick(&[1e308, -1e308, 0.5, -0.0, 1e-300, 65535.9])),
        5 | 6 => Value::String(token(rng)),
        7 => Value::String("a".repeat(rng.below(70_000))),
        8 => {
            let mut v = json!(1);
            for _ in 0..rng.below(120) {
                v = json!([v]);
            }
            v
        }
        9 => json!({}),
        10 => json!([]),
        _ => {
            let n = 1 + rng.below(12);
            Value::String(String::from_utf8_lossy(&rng.bytes(n)).into_owned())
        }
    }
}

/// Mutate a JSON document in place: replace a random node with a value
/// from [`json_value`], remove a member, or add an unknown one.
pub fn mutate_json(rng: &mut Rng, node: &mut serde_json::Value) {
    use serde_json::Value;
    let descend = !rng.one_in(4);
    let child = match node {
        Value::Object(m) if descend && !m.is_empty() => {
            let i = rng.below(m.len());
            m.iter_mut().nth(i).map(|(_, v)| v)
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.below(a.len());
            a.get_mut(i)
        }
        _ => None,
    };
    if let Some(child) = child {
        if matches!(child, Value::Object(_) | Value::Array(_)) || rng.one_in(2) {
            mutate_json(rng, child);
        } else {
            *child = json_value(rng);
        }
        return;
    }
    match node {
        Value::Object(m) if rng.one_in(3) && !m.is_empty() => {
            let key = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            m.remove(&key);
        }
        Value::Object(m) if rng.one_in(2) => {
            let key = token(rng);
            m.insert(key, json_value(rng));
        }
        Value::Array(a) if rng.one_in(2) => a.push(json_value(rng)),
        n => *n = json_value(rng),
    }
}

/// [`run`] over JSON documents: each case is one of `samples` with a few
/// [`mutate_json`] steps, handed over as a value.
pub fn run_json(
    name: &str,
    seed: u64,
    cases: usize,
    samples: &[serde_json::Value],
    mut check: impl FnMut(&serde_json::Value),
) {
    let (seed, cases) = scaled(seed, cases);
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let mut doc = rng.pick(samples).clone();
        for _ in 0..1 + rng.below(4) {
            mutate_json(&mut rng, &mut doc);
        }
        let start = Instant::now();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&doc))) {
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            let text = doc.to_string();
            panic!(
                "{name}: case {case} (seed {seed}) panicked: {why}\ninput: {}",
                show(text.as_bytes())
            );
        }
        let took = start.elapsed();
        assert!(
            took < CASE_LIMIT,
            "{name}: case {case} (seed {seed}) took {took:?}\ninput: {}",
            show(doc.to_string().as_bytes())
        );
    }
}

/// An input for a failure message, cut short.
fn show(data: &[u8]) -> String {
    let text = format!(
        "{:?}",
        String::from_utf8_lossy(&data[..data.len().min(2000)])
    );
    if data.len() > 2000 {
        format!("{text}... (cut)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inputs() {
        let samples: &[&[u8]] = &[b"host:80 weight=2", b"[1,2,3]"];
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..50).map(|_| input(&mut r, samples)).collect()
        };
        let mut r = Rng::new(7);
        for want in a {
            assert_eq!(input(&mut r, samples), want);
        }
    }

    #[test]
    fn names_the_input_of_a_panic() {
        let got = catch_unwind(|| {
            run("t", 1, 100, &[b"abc"], |d| assert!(d.len() < 5, "long"));
        });
        let e = got.expect_err("a long input comes within 100 cases");
        let msg = e.downcast_ref::<String>().expect("message");
        assert!(msg.contains("t: case") && msg.contains("input ("), "{msg}");
    }
}

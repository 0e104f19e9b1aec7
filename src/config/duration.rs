//! Go duration strings (`time.ParseDuration`): `"500ms"`, `"1m30s"`, `"1.5h"`.
//!
//! Differences from Go, on purpose: negative values are rejected, and a
//! number without a unit (other than `"0"`) is its own error so the caller
//! can explain it (gobetween silently turns such values into "no timeout").

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Digits without a unit, e.g. `"50"`.
    NoUnit,
    Negative,
    TooLarge,
    Invalid,
}

/// Parse a Go duration string. `"0"` (and `"+0"`) is zero.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.strip_prefix('+').unwrap_or(text);
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Invalid);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(DurationError::NoUnit);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, tail) = component(rest)?;
        total = total.checked_add(nanos).ok_or(DurationError::TooLarge)?;
        rest = tail;
    }
    to_duration(total)
}

/// One `<number><unit>` component: its value in nanoseconds and the rest.
fn component(s: &str) -> Result<(u128, &str), DurationError> {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or(DurationError::NoUnit)?;
    let (number, tail) = s.split_at(num_end);
    let unit_end = tail
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(tail.len());
    let (unit, rest) = tail.split_at(unit_end);
    let scale = unit_nanos(unit).ok_or(DurationError::Invalid)?;
    Ok((scaled(number, scale)?, rest))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `number` (`"1"`, `"1.5"`, `".5"`, `"1."`) times `scale` nanoseconds.
fn scaled(number: &str, scale: u128) -> Result<u128, DurationError> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(DurationError::Invalid);
    }
    let mut value = digits(int)?
        .checked_mul(scale)
        .ok_or(DurationError::TooLarge)?;
    let mut unit = scale;
    for d in frac.bytes().take(30) {
        unit /= 10;
        value = value.saturating_add(u128::from(d.wrapping_sub(b'0')) * unit);
    }
    Ok(value)
}

fn digits(s: &str) -> Result<u128, DurationError> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse().map_err(|_| DurationError::TooLarge)
}

fn to_duration(nanos: u128) -> Result<Duration, DurationError> {
    // Go's limit is about 292 years (i64 nanoseconds); keep the same bound.
    if nanos > i64::MAX as u128 {
        return Err(DurationError::TooLarge);
    }
    let secs = (nanos / 1_000_000_000) as u64;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Render a duration the way Go prints it (`1m30s`, `500ms`, `0s`).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_frac(nanos, 1_000_000));
    }
    let secs = nanos / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = trim_frac(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn trim_frac(value: u128, unit: u128) -> String {
    let (whole, frac) = (value / unit, value % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_syntax() {
        let cases = [
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("500ms", ms(500)),
            ("2s", ms(2000)),
            ("1m30s", ms(90_000)),
            ("1h", ms(3_600_000)),
            ("1.5s", ms(1500)),
            (".5s", ms(500)),
            ("1.s", ms(1000)),
            ("10ns", Duration::from_nanos(10)),
            ("3us", Duration::from_micros(3)),
            ("3µs", Duration::from_micros(3)),
            ("3μs", Duration::from_micros(3)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("2s500ms", ms(2500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        use DurationError::*;
        let cases = [
            ("50", NoUnit),
            ("1.5", NoUnit),
            ("-1s", Negative),
            ("-0", Negative),
            ("", Invalid),
            ("abc", Invalid),
            ("1x", Invalid),
            ("1 s", Invalid),
            ("s", Invalid),
            (".s", Invalid),
            ("1..5s", Invalid),
            ("1s5", NoUnit),
            ("3000000h", TooLarge),
            ("99999999999999999999999999999999999999999h", TooLarge),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(ms(500)), "500ms");
        assert_eq!(format(ms(1500)), "1.5s");
        assert_eq!(format(ms(90_000)), "1m30s");
        assert_eq!(format(ms(3_600_000)), "1h0m0s");
        for text in ["1m30s", "250ms", "2h3m4.5s"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}

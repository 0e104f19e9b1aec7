//! Go double-quoted string literal escapes, as gobetween applies them to
//! `probe_send` / `probe_recv` (`strconv.Unquote` of `"` + value + `"`).

/// Un-escape a value written with Go string escapes: `\n \r \t \a \b \f \v
/// \\ \" \xNN \NNN (octal) \uXXXX \UXXXXXXXX`. `\xNN` and `\NNN` give raw
/// bytes; `\u`/`\U` give UTF-8. A bare `"`, a raw newline or an unknown
/// escape is an error, as in Go.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => escape(text, at, &mut chars, &mut out)?,
            '"' => return Err(format!("unescaped `\"` at byte {at} (write \\\")")),
            '\n' => return Err(format!("raw newline at byte {at} (write \\n)")),
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(out)
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn escape(text: &str, at: usize, chars: &mut Chars<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let Some((_, c)) = chars.next() else {
        return Err(format!("trailing `\\` at byte {at}"));
    };
    let simple = match c {
        'a' => Some(0x07),
        'b' => Some(0x08),
        'f' => Some(0x0c),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(0x0b),
        '\\' => Some(b'\\'),
        '"' => Some(b'"'),
        _ => None,
    };
    if let Some(byte) = simple {
        out.push(byte);
        return Ok(());
    }
    match c {
        'x' => out.push(byte_value(take(chars, 2, 16, text, at)?, at)?),
        '0'..='7' => {
            let rest = take(chars, 2, 8, text, at)?;
            let value = (c as u32 - '0' as u32) * 64 + rest;
            out.push(byte_value(value, at)?);
        }
        'u' => push_char(take(chars, 4, 16, text, at)?, at, out)?,
        'U' => push_char(take(chars, 8, 16, text, at)?, at, out)?,
        _ => return Err(format!("unknown escape `\\{c}` at byte {at}")),
    }
    Ok(())
}

/// Read exactly `n` digits in `radix`.
fn take(chars: &mut Chars<'_>, n: usize, radix: u32, text: &str, at: usize) -> Result<u32, String> {
    let mut value = 0u32;
    for _ in 0..n {
        let digit = chars
            .next()
            .and_then(|(_, c)| c.to_digit(radix))
            .ok_or_else(|| bad_escape(text, at, n))?;
        value = value * radix + digit;
    }
    Ok(value)
}

fn bad_escape(text: &str, at: usize, n: usize) -> String {
    let shown: String = text[at..].chars().take(n + 2).collect();
    format!("bad escape `{shown}` at byte {at}")
}

fn byte_value(value: u32, at: usize) -> Result<u8, String> {
    u8::try_from(value).map_err(|_| format!("octal escape at byte {at} is over \\377"))
}

fn push_char(value: u32, at: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let c = char::from_u32(value)
        .ok_or_else(|| format!("escape at byte {at} is not a Unicode scalar value"))?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn go_escapes() {
        let cases: [(&str, &[u8]); 10] = [
            ("plain", b"plain"),
            ("PING\\r\\n", b"PING\r\n"),
            ("a\\tb", b"a\tb"),
            ("\\\\", b"\\"),
            ("say \\\"hi\\\"", b"say \"hi\""),
            ("\\x00\\xff", &[0, 0xff]),
            ("\\101\\000\\377", &[b'A', 0, 0xff]),
            ("\\u00e9", "é".as_bytes()),
            ("\\U0001F600", "😀".as_bytes()),
            ("é'", "é'".as_bytes()),
        ];
        for (text, want) in cases {
            assert_eq!(unescape(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "\"",
            "a\nb",
            "\\",
            "\\q",
            "\\x1",
            "\\xzz",
            "\\400",
            "\\18",
            "\\ud800",
            "\\'",
            "\\U00110000",
        ] {
            assert!(unescape(text).is_err(), "{text:?}");
        }
    }
}

//! gobetween's backend line format:
//! `host:port [weight=N] [priority=N] [max_connections=N] [sni=NAME]`.
//!
//! Exactly gobetween's grammar: the options are optional but must come in
//! that order, each after exactly one whitespace character; numbers are
//! non-negative decimal integers; the host is everything before the last
//! `:port` (so `[::1]:8000` gives host `[::1]`). Surrounding whitespace is
//! trimmed first. Unlike gobetween, a line that does not match is reported
//! (gobetween skips it with a warning) and numbers must fit their type.

use super::BackendSpec;

/// Option names in the only order gobetween accepts.
const OPTIONS: [&str; 4] = ["weight", "priority", "max_connections", "sni"];

/// Parse one line. Errors say what is wrong with the line.
pub fn parse_line(line: &str) -> Result<BackendSpec, String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("empty line; expected host:port".into());
    }
    let mut tokens = line.split(|c: char| c.is_ascii_whitespace());
    let first = tokens.next().unwrap_or_default();
    let (host, port) = parse_host_port(first)?;
    let mut spec = BackendSpec {
        host: host.to_string(),
        port,
        weight: 1,
        priority: 1,
        max_connections: 0,
        sni: String::new(),
    };
    let mut next_option = 0;
    for token in tokens {
        next_option = apply_option(&mut spec, token, next_option)?;
    }
    Ok(spec)
}

fn parse_host_port(token: &str) -> Result<(&str, u16), String> {
    let Some((host, port)) = token.rsplit_once(':') else {
        return Err(format!("`{token}`: expected host:port"));
    };
    if host.is_empty() {
        return Err(format!("`{token}`: the host is empty"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "`{token}`: an IPv6 address needs brackets, e.g. `[{host}]:{port}`"
        ));
    }
    super::check_host(host)?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{token}`: the port must be a number"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{token}`: the port must be 1-65535")),
        Ok(p) => Ok((host, p)),
    }
}

/// Apply `name=value`; `next` is the index in [`OPTIONS`] the option may
/// start at. Returns the index after the one applied.
fn apply_option(spec: &mut BackendSpec, token: &str, next: usize) -> Result<usize, String> {
    if token.is_empty() {
        return Err("options must be separated by exactly one space".into());
    }
    let order = "options go in this order: weight=N priority=N max_connections=N sni=NAME";
    let Some((name, value)) = token.split_once('=') else {
        return Err(format!("`{token}` is not name=value ({order})"));
    };
    let Some(index) = OPTIONS.iter().position(|o| *o == name) else {
        return Err(format!("unknown option `{name}` ({order})"));
    };
    if index < next {
        return Err(format!("`{name}` is out of order or repeated ({order})"));
    }
    match index {
        0 => spec.weight = number(name, value)?,
        1 => spec.priority = number(name, value)?,
        2 => spec.max_connections = number(name, value)?,
        _ if value.is_empty() => return Err("`sni=` needs a name".into()),
        _ => spec.sni = value.to_string(),
    }
    Ok(index + 1)
}

fn number(name: &str, value: &str) -> Result<u32, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{name}={value}`: expected a non-negative integer"));
    }
    value
        .parse()
        .map_err(|_| format!("`{name}={value}`: the number is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, port: u16, w: u32, p: u32, mc: u32, sni: &str) -> BackendSpec {
        BackendSpec {
            host: host.into(),
            port,
            weight: w,
            priority: p,
            max_connections: mc,
            sni: sni.into(),
        }
    }

    #[test]
    fn good_lines() {
        let cases = [
            ("localhost:8000", spec("localhost", 8000, 1, 1, 0, "")),
            ("  10.0.0.1:80  ", spec("10.0.0.1", 80, 1, 1, 0, "")),
            ("h:1 weight=5", spec("h", 1, 5, 1, 0, "")),
            ("h:1 priority=2", spec("h", 1, 1, 2, 0, "")),
            ("h:1 max_connections=7", spec("h", 1, 1, 1, 7, "")),
            (
                "h:1 sni=a.example.com",
                spec("h", 1, 1, 1, 0, "a.example.com"),
            ),
            (
                "h:1 weight=0 priority=0 max_connections=3 sni=x",
                spec("h", 1, 0, 0, 3, "x"),
            ),
            ("h:1 weight=2 sni=x", spec("h", 1, 2, 1, 0, "x")),
            ("h:1\tweight=2", spec("h", 1, 2, 1, 0, "")),
            ("[::1]:8000", spec("[::1]", 8000, 1, 1, 0, "")),
            (
                "[fe80::1%eth0]:53 weight=3",
                spec("[fe80::1%eth0]", 53, 3, 1, 0, ""),
            ),
            ("h:1 weight=007", spec("h", 1, 7, 1, 0, "")),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line), Ok(want), "line {line:?}");
        }
    }

    #[test]
    fn bad_lines() {
        let cases = [
            "",
            "   ",
            "localhost",
            ":80",
            "h:",
            "h:http",
            "h:0",
            "h:65536",
            "h:-1",
            "h:1 priority=1 weight=1",
            "h:1 sni=x weight=1",
            "h:1 weight=1 weight=2",
            "h:1  weight=1",
            "h:1 weight=-1",
            "h:1 weight=+1",
            "h:1 weight=",
            "h:1 weight=1.5",
            "h:1 weight=99999999999",
            "h:1 sni=",
            "h:1 foo=1",
            "h:1 weight",
            "h:1 sni=a b",
            // An IPv6 address needs brackets; other hosts are names or IPv4.
            "a:b:9",
            "::1:80",
            "h$x:80",
            "[::1:80",
        ];
        for line in cases {
            assert!(parse_line(line).is_err(), "line {line:?} should fail");
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = parse_line("h:1 priority=1 weight=2").unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        let e = parse_line("h:x").unwrap_err();
        assert!(e.contains("port"), "{e}");
        let e = parse_line("::1:9005").unwrap_err();
        assert!(e.contains("needs brackets, e.g. `[::1]:9005`"), "{e}");
    }
}

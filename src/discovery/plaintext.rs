//! `plaintext`: GET `plaintext_endpoint`; each non-empty line is a backend,
//! in the line format, or matched by `plaintext_regex_pattern` with named
//! groups host, port (required), weight, priority, max_connections, sni.
//! Lines that do not match are skipped with a warning; a body in which no
//! line matches (an error page served with status 200) fails the fetch.

use regex::Regex;

use super::policy::{lines_result, parse_lines};
use super::web::{TlsFiles, get};
use super::{BackendSpec, Listing};

#[derive(Debug, Clone)]
pub struct Plaintext {
    pub endpoint: String,
    /// `None` = the backend line format.
    pub pattern: Option<Regex>,
}

impl PartialEq for Plaintext {
    fn eq(&self, other: &Self) -> bool {
        self.endpoint == other.endpoint
            && self.pattern.as_ref().map(Regex::as_str) == other.pattern.as_ref().map(Regex::as_str)
    }
}

impl Eq for Plaintext {}

impl Plaintext {
    pub async fn fetch(&self) -> Result<Listing, String> {
        let body = get(&self.endpoint, &[], &TlsFiles::default()).await?;
        let text = String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
        self.listing(&text)
    }

    /// The result of a fetch that got `text`: an error when no line is a
    /// backend but some were not blank (see [`lines_result`]).
    pub fn listing(&self, text: &str) -> Result<Listing, String> {
        // A byte order mark (Windows editors) is not part of the first host.
        lines_result(self.parse(text.strip_prefix('\u{feff}').unwrap_or(text)))
    }

    /// Parse a body (pure).
    pub fn parse(&self, text: &str) -> Listing {
        let Some(re) = &self.pattern else {
            return parse_lines(text);
        };
        let mut listing = Listing::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match by_regex(re, line) {
                Ok(spec) => listing.specs.push(spec),
                Err(e) => listing.warn(|| format!("line {}: {e}; skipped", n + 1)),
            }
        }
        listing
    }
}

fn by_regex(re: &Regex, line: &str) -> Result<BackendSpec, String> {
    let caps = re
        .captures(line)
        .ok_or_else(|| format!("`{line}` does not match the pattern"))?;
    let group = |name: &str| {
        caps.name(name)
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty())
    };
    let num = |name: &str, default: u32| -> Result<u32, String> {
        group(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{name} `{v}` is not a number"))
        })
    };
    let host = group("host").ok_or("no host")?;
    let port = group("port").ok_or("no port")?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port `{port}` is not 1-65535"))?;
    Ok(BackendSpec {
        weight: num("weight", 1)?,
        priority: num("priority", 1)?,
        max_connections: num("max_connections", 0)?,
        ..BackendSpec::new(host, port, group("sni").unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format_and_custom_regex() {
        let p = Plaintext {
            endpoint: String::new(),
            pattern: None,
        };
        let l = p.parse("a:1 weight=2\n\nbad line\n");
        assert_eq!(l.specs.len(), 1);
        assert_eq!(l.warnings.len(), 1);
        let re = Regex::new(r"^(?P<host>[^,]+),(?P<port>\d+)(,(?P<weight>\d+))?(,(?P<sni>\S+))?$")
            .unwrap();
        let p = Plaintext {
            endpoint: String::new(),
            pattern: Some(re),
        };
        let l = p.parse("10.0.0.1,80,5,web\n10.0.0.2,81\n10.0.0.3,x\n10.0.0.4,0\n");
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["10.0.0.1:80", "10.0.0.2:81"]);
        assert_eq!((l.specs[0].weight, l.specs[0].sni.as_str()), (5, "web"));
        assert_eq!(l.warnings.len(), 2);
    }

    /// A bare IPv6 host from a custom pattern gets brackets, as json and
    /// consul hosts do (the key `::1:80` was ambiguous in the API).
    #[test]
    fn regex_ipv6_host_gets_brackets() {
        let re = Regex::new(r"^(?P<host>\S+) (?P<port>\d+)$").unwrap();
        let p = Plaintext {
            endpoint: String::new(),
            pattern: Some(re),
        };
        let l = p.parse("::1 80\n[::2] 81\n127.0.0.1 82\n");
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["[::1]:80", "[::2]:81", "127.0.0.1:82"]);
    }

    /// An error page served with status 200 must not empty the list.
    #[test]
    fn body_without_one_backend_line_is_an_error() {
        let p = Plaintext {
            endpoint: String::new(),
            pattern: None,
        };
        let e = p
            .listing("<html>\n<body>Service Unavailable</body>\n")
            .unwrap_err();
        assert!(e.contains("no line is a backend"), "{e}");
        assert_eq!(p.listing("\n\n"), Ok(Listing::default()));
        assert_eq!(p.listing("a:1\nbad\n").map(|l| l.specs.len()), Ok(1));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_host() {
        let p = Plaintext {
            endpoint: String::new(),
            pattern: None,
        };
        let l = p.listing("\u{feff}10.0.0.1:80\n10.0.0.2:80\n").unwrap();
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["10.0.0.1:80", "10.0.0.2:80"]);
    }
}

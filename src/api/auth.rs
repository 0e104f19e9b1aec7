//! HTTP Basic auth for the API, compared in constant time.
//!
//! The expected credentials are encoded once at start; a request's token is
//! compared byte for byte without an early exit, so the time taken does not
//! tell how much of a guess was right.

use crate::http::base64::encode;

/// The base64 token a correct `Authorization: Basic` header carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Expected(Vec<u8>);

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expected(***)")
    }
}

impl Expected {
    pub fn new(login: &str, password: &str) -> Self {
        Self(encode(format!("{login}:{password}").as_bytes()).into_bytes())
    }

    /// Does this `Authorization` header value carry the right credentials?
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(value) = header else { return false };
        let value = value.trim();
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("basic") && constant_time_eq(&self.0, token.trim().as_bytes())
    }
}

/// Equal bytes? Time depends only on the lengths, not on the contents.
pub fn constant_time_eq(expected: &[u8], got: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != got.len());
    for (i, e) in expected.iter().enumerate() {
        let g = got.get(i).copied().unwrap_or(!e);
        diff |= e ^ g;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_basic_credentials() {
        let e = Expected::new("admin", "s3cret");
        let good = format!("Basic {}", encode(b"admin:s3cret"));
        assert!(e.check(Some(&good)));
        assert!(e.check(Some(&good.replace("Basic", "basic"))));
        assert!(!e.check(Some(&format!("Basic {}", encode(b"admin:s3creT")))));
        assert!(!e.check(Some(&format!("Basic {}", encode(b"admin:s3cret!")))));
        assert!(!e.check(Some(&format!("Bearer {}", encode(b"admin:s3cret")))));
        assert!(!e.check(Some("Basic")));
        assert!(!e.check(None));
    }

    #[test]
    fn constant_time_eq_handles_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn debug_hides_the_token() {
        assert_eq!(format!("{:?}", Expected::new("a", "b")), "Expected(***)");
    }
}

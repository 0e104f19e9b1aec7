//! HTTP Basic auth for the API, compared in constant time.
//!
//! The expected credentials are encoded once at start; a request's token is
//! compared byte for byte without an early exit, so the time taken does not
//! tell how much of a guess was right.

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
        Self(base64(format!("{login}:{password}").as_bytes()).into_bytes())
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

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn checks_basic_credentials() {
        let e = Expected::new("admin", "s3cret");
        let good = format!("Basic {}", base64(b"admin:s3cret"));
        assert!(e.check(Some(&good)));
        assert!(e.check(Some(&good.replace("Basic", "basic"))));
        assert!(!e.check(Some(&format!("Basic {}", base64(b"admin:s3creT")))));
        assert!(!e.check(Some(&format!("Basic {}", base64(b"admin:s3cret!")))));
        assert!(!e.check(Some(&format!("Bearer {}", base64(b"admin:s3cret")))));
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

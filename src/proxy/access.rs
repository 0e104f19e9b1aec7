//! `access` rules: `"allow CIDR"` / `"deny CIDR"`, first match wins.
//!
//! A rule is the word `allow` or `deny`, whitespace, and an IP address or a
//! CIDR network (`198.18.0.0/15`, `2001:db8::/32`); an address without a
//! prefix is a single host (/32 or /128). Host bits below the prefix are
//! ignored (`10.1.2.3/8` is `10.0.0.0/8`), as Go's `net.ParseCIDR` does. The
//! first rule that matches the client decides; no match → the default.
//!
//! Families: IPv4 rules match IPv4 clients and IPv6 rules IPv6 clients. A
//! client seen as IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as a dual-stack
//! listener reports IPv4 peers) is matched as the IPv4 address, and a rule
//! written as an IPv4-mapped network with a prefix of at least 96
//! (`::ffff:10.0.0.0/104`) is stored as the IPv4 network (`10.0.0.0/8`).
//! So `deny ::/0` does not deny IPv4 clients.
//!
//! Networks are stored pre-masked as `u32`/`u128` with their mask, so a rule
//! check is an AND and a compare.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessList {
    pub default_allow: bool,
    pub rules: Vec<Rule>,
}

/// One parsed rule. `network` is the masked network address and `prefix`
/// its length, for display; matching uses the precomputed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub network: IpAddr,
    pub prefix: u8,
    net: Net,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    V4 { addr: u32, mask: u32 },
    V6 { addr: u128, mask: u128 },
}

impl AccessList {
    /// `default` is "allow", "deny" or "" (= allow); rules as gobetween writes them.
    ///
    /// Every problem is reported, one message per bad rule (numbered from 1)
    /// plus one for a bad default.
    pub fn parse(default: &str, rules: &[String]) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let default_allow = match default {
            "" | "allow" => true,
            "deny" => false,
            other => {
                errors.push(format!(r#"default "{other}": expected "allow" or "deny""#));
                true
            }
        };
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, text) in rules.iter().enumerate() {
            match Rule::parse(text) {
                Ok(rule) => parsed.push(rule),
                Err(e) => errors.push(format!(r#"rule {} "{text}": {e}"#, i + 1)),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                default_allow,
                rules: parsed,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let client = Client::of(ip);
        self.rules
            .iter()
            .find(|r| r.net.contains(client))
            .map_or(self.default_allow, |r| r.allow)
    }
}

/// A client address in matching form.
#[derive(Clone, Copy)]
enum Client {
    V4(u32),
    V6(u128),
}

impl Client {
    #[inline]
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6(u128::from(v6)),
            },
        }
    }
}

impl Net {
    #[inline]
    fn contains(self, client: Client) -> bool {
        match (self, client) {
            (Net::V4 { addr, mask }, Client::V4(ip)) => ip & mask == addr,
            (Net::V6 { addr, mask }, Client::V6(ip)) => ip & mask == addr,
            _ => false,
        }
    }
}

impl Rule {
    /// One rule, e.g. `"allow 198.18.0.0/15"` or `"deny ::1"`. The error is
    /// the reason only (without the rule number or text).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let allow = match words.next() {
            Some("allow") => true,
            Some("deny") => false,
            _ => return Err(r#"expected "allow" or "deny""#.to_string()),
        };
        let Some(target) = words.next() else {
            return Err(r#"expected an IP address or CIDR network after "allow"/"deny""#.into());
        };
        if let Some(extra) = words.next() {
            return Err(format!(r#"unexpected "{extra}" after the address"#));
        }
        let (addr, prefix) = match target.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (target, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!(r#"bad IP address "{addr}""#))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let n = (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse::<u8>().ok())
                    .flatten()
                    .ok_or_else(|| format!(r#"bad CIDR prefix "{p}""#))?;
                if n > max {
                    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err(format!("bad CIDR prefix {n} for {family}"));
                }
                n
            }
        };
        Ok(Self::new(allow, ip, prefix))
    }

    /// A rule for `network/prefix` (`prefix` clamped to the family's length;
    /// IPv4-mapped networks with prefix >= 96 become IPv4).
    pub fn new(allow: bool, network: IpAddr, prefix: u8) -> Self {
        let (net, network, prefix) = match network {
            IpAddr::V4(v4) => v4_net(u32::from(v4), prefix),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => v4_net(u32::from(v4), prefix - 96),
                _ => {
                    let prefix = prefix.min(128);
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    let addr = u128::from(v6) & mask;
                    (
                        Net::V6 { addr, mask },
                        IpAddr::V6(Ipv6Addr::from(addr)),
                        prefix,
                    )
                }
            },
        };
        Self {
            allow,
            network,
            prefix,
            net,
        }
    }

    /// Whether this rule's network contains `ip` (IPv4-mapped `ip` as IPv4).
    pub fn matches(&self, ip: IpAddr) -> bool {
        self.net.contains(Client::of(ip))
    }
}

fn v4_net(ip: u32, prefix: u8) -> (Net, IpAddr, u8) {
    let prefix = prefix.min(32);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let addr = ip & mask;
    (
        Net::V4 { addr, mask },
        IpAddr::V4(Ipv4Addr::from(addr)),
        prefix,
    )
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.allow { "allow" } else { "deny" };
        write!(f, "{verb} {}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(default: &str, rules: &[&str]) -> AccessList {
        let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
        AccessList::parse(default, &rules).unwrap()
    }

    fn errors(default: &str, rules: &[&str]) -> Vec<String> {
        let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
        AccessList::parse(default, &rules).unwrap_err()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults() {
        assert!(list("", &[]).allows(ip("1.2.3.4")));
        assert!(list("allow", &[]).allows(ip("::1")));
        assert!(!list("deny", &[]).allows(ip("1.2.3.4")));
        assert!(!list("deny", &[]).allows(ip("2001:db8::1")));
    }

    #[test]
    fn first_match_wins() {
        let acl = list(
            "deny",
            &[
                "deny 10.1.2.3",
                "allow 10.0.0.0/8",
                "deny 10.0.0.0/16",
                "allow 2001:db8::/32",
            ],
        );
        assert!(!acl.allows(ip("10.1.2.3")));
        assert!(acl.allows(ip("10.1.2.4")));
        assert!(acl.allows(ip("10.0.0.5"))); // the /8 comes before the /16 deny
        assert!(!acl.allows(ip("11.0.0.1"))); // default
        assert!(acl.allows(ip("2001:db8:ffff::1")));
        assert!(!acl.allows(ip("2001:db9::1")));
    }

    #[test]
    fn cidr_boundaries() {
        let acl = list("deny", &["allow 198.18.0.0/15"]);
        assert!(acl.allows(ip("198.18.0.0")));
        assert!(acl.allows(ip("198.19.255.255")));
        assert!(!acl.allows(ip("198.17.255.255")));
        assert!(!acl.allows(ip("198.20.0.0")));
        let acl = list("allow", &["deny ::1"]);
        assert!(!acl.allows(ip("::1")));
        assert!(acl.allows(ip("::2")));
        assert!(acl.allows(ip("127.0.0.1")));
    }

    #[test]
    fn zero_and_full_prefixes() {
        let acl = list("allow", &["deny 0.0.0.0/0"]);
        assert!(!acl.allows(ip("255.255.255.255")));
        assert!(
            acl.allows(ip("2001:db8::1")),
            "an IPv4 rule never matches IPv6"
        );
        let acl = list("allow", &["deny ::/0"]);
        assert!(!acl.allows(ip("2001:db8::1")));
        assert!(acl.allows(ip("1.2.3.4")), "an IPv6 rule never matches IPv4");
        let acl = list("deny", &["allow 1.2.3.4/32", "allow 2001:db8::7/128"]);
        assert!(acl.allows(ip("1.2.3.4")) && !acl.allows(ip("1.2.3.5")));
        assert!(acl.allows(ip("2001:db8::7")) && !acl.allows(ip("2001:db8::6")));
    }

    #[test]
    fn host_bits_are_masked() {
        let acl = list("deny", &["allow 10.1.2.3/8", "allow 2001:db8:1:2::5/32"]);
        assert_eq!(acl.rules[0].network, ip("10.0.0.0"));
        assert_eq!(acl.rules[0].to_string(), "allow 10.0.0.0/8");
        assert_eq!(acl.rules[1].to_string(), "allow 2001:db8::/32");
        assert!(acl.allows(ip("10.200.0.1")));
        assert!(acl.allows(ip("2001:db8:abcd::1")));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_rules() {
        let acl = list("allow", &["deny 1.2.3.0/24"]);
        assert!(!acl.allows(ip("::ffff:1.2.3.4")));
        assert!(acl.allows(ip("::ffff:1.2.4.4")));
        // IPv4-compatible (deprecated ::a.b.c.d) is not mapped: stays IPv6.
        assert!(acl.allows(ip("::1.2.3.4")));
    }

    #[test]
    fn ipv4_mapped_rules_become_ipv4() {
        let acl = list(
            "allow",
            &["deny ::ffff:10.0.0.0/104", "deny ::ffff:192.0.2.9"],
        );
        assert_eq!(acl.rules[0].to_string(), "deny 10.0.0.0/8");
        assert_eq!(acl.rules[1].to_string(), "deny 192.0.2.9/32");
        assert!(!acl.allows(ip("10.9.9.9")));
        assert!(!acl.allows(ip("::ffff:192.0.2.9")));
        assert!(acl.allows(ip("192.0.2.8")));
    }

    #[test]
    fn whitespace_is_flexible() {
        let acl = list("deny", &["  allow\t192.0.2.0/24  "]);
        assert!(acl.allows(ip("192.0.2.1")));
    }

    #[test]
    fn all_bad_rules_are_reported() {
        let errs = errors(
            "maybe",
            &[
                "allow 1.2.3.4",
                "alow 1.2.3.4",
                "allow 1.2.3.4/33",
                "deny ::/129",
                "allow foo",
                "deny",
                "allow 1.2.3.4 5.6.7.8",
                "allow 1.2.3.0/",
                "allow 1.2.3.0/+8",
                "Allow 1.2.3.4",
                "",
                "deny 1.2.3.0/1000",
            ],
        );
        assert_eq!(
            errs,
            [
                r#"default "maybe": expected "allow" or "deny""#,
                r#"rule 2 "alow 1.2.3.4": expected "allow" or "deny""#,
                r#"rule 3 "allow 1.2.3.4/33": bad CIDR prefix 33 for IPv4"#,
                r#"rule 4 "deny ::/129": bad CIDR prefix 129 for IPv6"#,
                r#"rule 5 "allow foo": bad IP address "foo""#,
                r#"rule 6 "deny": expected an IP address or CIDR network after "allow"/"deny""#,
                r#"rule 7 "allow 1.2.3.4 5.6.7.8": unexpected "5.6.7.8" after the address"#,
                r#"rule 8 "allow 1.2.3.0/": bad CIDR prefix """#,
                r#"rule 9 "allow 1.2.3.0/+8": bad CIDR prefix "+8""#,
                r#"rule 10 "Allow 1.2.3.4": expected "allow" or "deny""#,
                r#"rule 11 "": expected "allow" or "deny""#,
                r#"rule 12 "deny 1.2.3.0/1000": bad CIDR prefix "1000""#,
            ]
        );
    }

    #[test]
    fn rule_matches_and_new_clamps() {
        let r = Rule::new(true, ip("10.0.0.0"), 200);
        assert_eq!(r.prefix, 32);
        assert!(r.matches(ip("10.0.0.0")) && !r.matches(ip("10.0.0.1")));
        let r = Rule::new(false, ip("::"), 0);
        assert!(r.matches(ip("ffff::")) && !r.matches(ip("0.0.0.0")));
    }
}

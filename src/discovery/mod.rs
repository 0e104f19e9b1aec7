//! Backend discovery: where the list of backends of a server comes from.

pub mod static_list;

/// One backend as a discovery source describes it (gobetween's fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// Host name or IP literal as written (`[::1]` keeps its brackets).
    pub host: String,
    pub port: u16,
    /// Default 1.
    pub weight: u32,
    /// Default 1; lower is preferred.
    pub priority: u32,
    /// 0 = unlimited.
    pub max_connections: u32,
    /// Empty when unset.
    pub sni: String,
}

impl BackendSpec {
    /// The identity key, `"host:port"`, as gobetween prints it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

//! `srv`: an SRV query to `srv_lookup_server` (udp, or tcp; a truncated
//! udp answer is asked again over tcp). Each SRV record gives one backend:
//! port, weight and priority from the record, sni = the target name, host =
//! the target's address from the additional section (A first, then AAAA in
//! brackets), else from a follow-up A query, then AAAA. A target without
//! an address, a record with port 0 or target "." (RFC 2782: not
//! available), is skipped with a warning; NXDOMAIN or no records = empty
//! list. A follow-up lookup that fails (an error code such as REFUSED or
//! SERVFAIL, a broken answer, a socket error) skips only its target, with
//! a warning naming it; the fetch fails only when no target gave a backend
//! and a follow-up failed ([`settle`]). Follow-ups run up to
//! [`FOLLOW_UPS_AT_ONCE`] at a time, each target's bounded by
//! [`FOLLOW_UP_TIMEOUT`] (a target whose lookup gets no answer is skipped
//! too), all within the fetch's `timeout`. Messages are built and parsed with `simple-dns`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use simple_dns::rdata::{OPT, RData};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{BackendSpec, Listing};

/// Longest wait for one target's follow-up lookups (A, then AAAA): the
/// DNS library's default timeout in gobetween. A target whose lookup gets
/// no answer is skipped, not the whole fetch.
const FOLLOW_UP_TIMEOUT: Duration = Duration::from_secs(2);
/// Follow-up lookups in flight at once.
const FOLLOW_UPS_AT_ONCE: usize = 8;

/// Follow-up results by target.
type Found = HashMap<String, Result<Option<IpAddr>, String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// `host:port` of the DNS server.
    pub server: String,
    pub pattern: String,
    pub tcp: bool,
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower case, without the trailing dot.
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// What one answer holds: SRV records and addresses by owner name.
#[derive(Debug, Default)]
pub struct Answer {
    pub srv: Vec<SrvRecord>,
    pub addrs: HashMap<String, Vec<IpAddr>>,
}

fn name_key(name: &Name<'_>) -> String {
    name.to_string().trim_end_matches('.').to_ascii_lowercase()
}

/// Build a query for `name`/`qtype` with EDNS0 (4096-byte udp answers).
pub fn query(id: u16, name: &str, qtype: TYPE) -> Result<Vec<u8>, String> {
    let qname = Name::new(name).map_err(|e| format!("bad name {name:?}: {e}"))?;
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet.questions.push(Question::new(
        qname,
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    *packet.opt_mut() = Some(OPT {
        opt_codes: Vec::new(),
        udp_packet_size: 4096,
        version: 0,
    });
    packet
        .build_bytes_vec()
        .map_err(|e| format!("cannot build a query for {name:?}: {e}"))
}

/// Parse an answer to query `id`. NXDOMAIN gives an empty answer; other
/// error codes are errors.
pub fn parse(id: u16, bytes: &[u8]) -> Result<Answer, String> {
    let packet = Packet::parse(bytes).map_err(|e| format!("malformed DNS answer: {e}"))?;
    if packet.id() != id {
        return Err("DNS answer with the wrong id".into());
    }
    match packet.rcode() {
        RCODE::NoError => {}
        RCODE::NameError => return Ok(Answer::default()),
        other => return Err(format!("DNS server answered {other:?}")),
    }
    let mut answer = Answer::default();
    for rr in packet.answers.iter().chain(&packet.additional_records) {
        let owner = name_key(&rr.name);
        match &rr.rdata {
            RData::SRV(s) => answer.srv.push(SrvRecord {
                target: name_key(&s.target),
                port: s.port,
                priority: s.priority,
                weight: s.weight,
            }),
            RData::A(a) => push(&mut answer, owner, IpAddr::V4(Ipv4Addr::from(a.address))),
            RData::AAAA(a) => push(&mut answer, owner, IpAddr::V6(Ipv6Addr::from(a.address))),
            _ => {}
        }
    }
    Ok(answer)
}

fn push(answer: &mut Answer, owner: String, ip: IpAddr) {
    answer.addrs.entry(owner).or_default().push(ip);
}

/// The address to use for `target`: the first IPv4, else the first IPv6.
pub fn pick(addrs: &[IpAddr]) -> Option<IpAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

/// gobetween's host string for an address: IPv6 in brackets.
pub fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A backend from a record and its address.
pub fn spec(record: &SrvRecord, ip: IpAddr) -> BackendSpec {
    BackendSpec {
        host: host_of(ip),
        port: record.port,
        weight: u32::from(record.weight),
        priority: u32::from(record.priority),
        max_connections: 0,
        sni: record.target.clone(),
    }
}

/// `srv_lookup_server`'s host (brackets dropped) and port: `host:port`,
/// `v4:port` or `[v6]:port`.
pub fn server_host_port(server: &str) -> Result<(&str, u16), String> {
    let bad = || format!("srv_lookup_server {server}: expected \"host:port\"");
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or_else(bad)?,
        None => host,
    };
    // A colon left is IPv6 (`::1:53` splits at its last colon): never a
    // name to look up.
    let v6_ok = !host.contains(':') || crate::resolve::ip_literal(host).is_some();
    match port.parse::<u16>() {
        Ok(port) if port > 0 && !host.is_empty() && v6_ok => Ok((host, port)),
        _ => Err(bad()),
    }
}

/// A fetch whose follow-up lookups failed for some targets keeps the
/// others; it fails only when no target gave a backend and at least one
/// lookup failed (the list is then unknown, not empty: the failpolicy
/// decides).
pub fn settle(listing: Listing, failed: Option<String>) -> Result<Listing, String> {
    match failed {
        Some(first) if listing.specs.is_empty() => {
            Err(format!("no SRV target gave a backend; {first}"))
        }
        _ => Ok(listing),
    }
}

impl Srv {
    pub async fn fetch(&self) -> Result<Listing, String> {
        let server = self.resolve_server().await?;
        let answer = self.ask(server, &self.pattern, TYPE::SRV).await?;
        let mut listing = Listing::default();
        let mut records = Vec::new();
        for record in &answer.srv {
            if record.target.is_empty() {
                // RFC 2782: target "." = the service is not available here.
                let warning = "a record with target \".\" (service not available); skipped";
                listing.warn(|| warning.to_string());
            } else if record.port == 0 {
                let warning = format!("{}: port 0; skipped", record.target);
                listing.warn(|| warning);
            } else {
                records.push(record);
            }
        }
        // Addresses the answer carried; the other targets need a follow-up.
        let known: Vec<_> = records
            .into_iter()
            .map(|r| (r, answer.addrs.get(&r.target).and_then(|a| pick(a))))
            .collect();
        let missing = known.iter().filter(|(_, ip)| ip.is_none());
        let missing = missing.map(|(r, _)| r.target.clone()).collect();
        let found = self.follow_ups(server, missing).await;
        // The first failed follow-up lookup.
        let mut failed: Option<String> = None;
        for (record, ip) in known {
            let ip = match ip {
                Some(ip) => Ok(Some(ip)),
                None => found
                    .get(&record.target)
                    .cloned()
                    .unwrap_or_else(|| Err("the lookup did not end".into())),
            };
            match ip {
                Ok(Some(ip)) => listing.specs.push(spec(record, ip)),
                Ok(None) => {
                    listing.warn(|| format!("{} has no A or AAAA record; skipped", record.target))
                }
                Err(e) => {
                    let warning = format!("{}: address lookup failed: {e}; skipped", record.target);
                    failed.get_or_insert_with(|| warning.clone());
                    listing.warn(|| warning);
                }
            }
        }
        settle(listing, failed)
    }

    /// Follow-up lookups of `targets` (each once), up to
    /// [`FOLLOW_UPS_AT_ONCE`] at a time, each bounded by
    /// [`FOLLOW_UP_TIMEOUT`].
    async fn follow_ups(&self, server: SocketAddr, mut targets: Vec<String>) -> Found {
        targets.sort_unstable();
        targets.dedup();
        let mut found = Found::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut pending = targets.into_iter();
        loop {
            while tasks.len() < FOLLOW_UPS_AT_ONCE
                && let Some(target) = pending.next()
            {
                let this = self.clone();
                tasks.spawn(async move {
                    let bounded =
                        tokio::time::timeout(FOLLOW_UP_TIMEOUT, this.lookup(server, &target));
                    let result = bounded.await.unwrap_or_else(|_| {
                        Err(format!("no answer within {}s", FOLLOW_UP_TIMEOUT.as_secs()))
                    });
                    (target, result)
                });
            }
            match tasks.join_next().await {
                Some(Ok((target, result))) => {
                    found.insert(target, result);
                }
                // A task that did not end (it cannot panic): its target
                // is missing from `found`, a failed lookup.
                Some(Err(_)) => {}
                None => return found,
            }
        }
    }

    /// The DNS server's address: an IP literal as it is, a name through
    /// the process-wide cache ([`crate::resolve`]).
    async fn resolve_server(&self) -> Result<SocketAddr, String> {
        let (host, port) = server_host_port(&self.server)?;
        crate::resolve::first_addr(host, port)
            .await
            .map_err(|e| format!("srv_lookup_server {}: {e}", self.server))
    }

    /// A follow-up A query, then AAAA.
    async fn lookup(&self, server: SocketAddr, target: &str) -> Result<Option<IpAddr>, String> {
        for qtype in [TYPE::A, TYPE::AAAA] {
            let answer = self.ask(server, target, qtype).await?;
            if let Some(ip) = answer.addrs.get(target).and_then(|a| pick(a)) {
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }

    async fn ask(&self, server: SocketAddr, name: &str, qtype: TYPE) -> Result<Answer, String> {
        let id = crate::balance::random_u64() as u16;
        let q = query(id, name, qtype)?;
        let bytes = if self.tcp {
            ask_tcp(server, &q).await
        } else {
            match ask_udp(server, &q, id).await? {
                Some(bytes) => Ok(bytes),
                None => ask_tcp(server, &q).await,
            }
        }
        .map_err(|e| format!("DNS {server}: {e}"))?;
        parse(id, &bytes)
    }
}

/// Send over udp; `None` when the answer is truncated.
async fn ask_udp(server: SocketAddr, q: &[u8], id: u16) -> Result<Option<Vec<u8>>, String> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let io = |e: std::io::Error| format!("DNS {server}: {e}");
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(q).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        let reply = &buf[..n];
        // Skip stray datagrams (another id, too short for a header).
        if n < 12 || u16::from_be_bytes([reply[0], reply[1]]) != id {
            continue;
        }
        let truncated = reply[2] & 0x02 != 0;
        return Ok((!truncated).then(|| reply.to_vec()));
    }
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(q.len()).map_err(|_| "query too long".to_string())?;
    let mut msg = len.to_be_bytes().to_vec();
    msg.extend_from_slice(q);
    s.write_all(&msg).await.map_err(io)?;
    let len = s.read_u16().await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.map_err(io)?;
    Ok(buf)
}

#[cfg(test)]
#[path = "srv_tests.rs"]
mod tests;

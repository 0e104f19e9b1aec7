//! `icmp`: echo requests over a ping socket or a raw socket.
//!
//! `count` requests go out spread over the first part of the time budget
//! (at most 100 ms apart); replies are collected until every request got
//! one or the budget is spent. At least one reply passes; `rtt` is the
//! average round trip of the replies. The port is ignored.
//!
//! Socket: first an unprivileged ping socket (`SOCK_DGRAM`, allowed when
//! the process's group is in `net.ipv4.ping_group_range`, which also
//! covers IPv6); on EACCES/EPERM a raw socket (needs CAP_NET_RAW). If
//! neither opens, the check fails with [`Cause::Unavailable`] and says why:
//! it never passes silently.

pub mod packet;

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{Cause, Outcome, Target, fmt_duration};
use crate::balance::random_u64;
use packet::Kind;

/// Longest gap between two requests.
const MAX_GAP: Duration = Duration::from_millis(100);
/// How long to wait after the last request without a check timeout.
const NO_TIMEOUT_WAIT: Duration = Duration::from_secs(2);

pub async fn check(count: u32, target: &Target, timeout: Option<Duration>) -> Outcome {
    let ip = match target.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match target.resolve().await {
            Ok(a) => a.ip(),
            Err(o) => return o,
        },
    };
    let (sock, kind) = match open(ip.is_ipv6()) {
        Ok(s) => s,
        Err(reason) => return Outcome::fail(Cause::Unavailable, reason),
    };
    let plan = Plan::new(count.max(1), timeout);
    match ping(sock, kind, ip, &plan).await {
        Ok(rtts) => judge(ip, count.max(1), &rtts, plan.budget),
        Err(e) => Outcome::from_io(&format!("icmp {ip}"), &e),
    }
}

/// The verdict on the round trips of the replies that came back.
pub fn judge(ip: IpAddr, sent: u32, rtts: &[Duration], budget: Duration) -> Outcome {
    if rtts.is_empty() {
        return Outcome::fail(
            Cause::NoReply,
            format!(
                "{ip}: 0/{sent} echo replies within {}",
                fmt_duration(budget)
            ),
        );
    }
    let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    Outcome::pass(format!(
        "{ip}: {}/{sent} echo replies, average {}us",
        rtts.len(),
        avg.as_micros()
    ))
    .with_rtt(Some(avg))
}

/// When requests go out and how long replies are awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub count: u32,
    pub gap: Duration,
    /// From the first request to giving up; inside the check's timeout, so
    /// that the result is reported before the check is cut.
    pub budget: Duration,
}

impl Plan {
    pub fn new(count: u32, timeout: Option<Duration>) -> Self {
        let count = count.max(1);
        let budget = match timeout {
            Some(t) => t.mul_f64(0.9),
            None => MAX_GAP * (count - 1) + NO_TIMEOUT_WAIT,
        };
        let gap = (budget / (2 * count)).min(MAX_GAP);
        Self { count, gap, budget }
    }
}

/// Open a ping socket, else a raw one; `Err` says why neither works.
fn open(v6: bool) -> Result<(Socket, Kind), String> {
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let ping_err = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => return prepare(s, Kind::Ping, v6),
        Err(e) if denied(&e) => e,
        Err(e) => return Err(format!("cannot open an ICMP ping socket: {e}")),
    };
    match Socket::new(domain, Type::RAW, Some(proto)) {
        Ok(s) => prepare(s, Kind::Raw, v6),
        Err(raw_err) => Err(format!(
            "no ICMP socket: ping socket: {ping_err} (group not in net.ipv4.ping_group_range); \
             raw socket: {raw_err} (needs CAP_NET_RAW)"
        )),
    }
}

fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

fn prepare(s: Socket, kind: Kind, v6: bool) -> Result<(Socket, Kind), String> {
    let fail = |e: io::Error| format!("ICMP socket setup: {e}");
    s.set_nonblocking(true).map_err(fail)?;
    if kind == Kind::Raw {
        filter_echo_replies(&s, v6).map_err(fail)?;
    }
    Ok((s, kind))
}

/// Let only echo replies reach a raw socket (it sees every ICMP packet).
fn filter_echo_replies(s: &Socket, v6: bool) -> io::Result<()> {
    const SOL_RAW: libc::c_int = 255;
    const ICMP_FILTER: libc::c_int = 1;
    const ICMP6_FILTER: libc::c_int = 1;
    let r = if v6 {
        // struct icmp6_filter: a set bit blocks that type.
        let mut f = [u32::MAX; 8];
        let t = usize::from(packet::ECHO_REPLY_V6);
        f[t >> 5] &= !(1u32 << (t & 31));
        setsockopt(s, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &f)
    } else {
        // A mask of the types to drop.
        let mask: u32 = !(1u32 << packet::ECHO_REPLY_V4);
        setsockopt(s, SOL_RAW, ICMP_FILTER, &mask)
    };
    if r {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt<T>(s: &Socket, level: libc::c_int, name: libc::c_int, value: &T) -> bool {
    // SAFETY: `value` points to a live T of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        ) == 0
    }
}

/// Send the requests and collect the round trips of the replies.
async fn ping(sock: Socket, kind: Kind, ip: IpAddr, plan: &Plan) -> io::Result<Vec<Duration>> {
    sock.connect(&SocketAddr::new(ip, 0).into())?;
    // SAFETY: the Socket owns its fd and keeps it open until dropped.
    let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))?;
    let v6 = ip.is_ipv6();
    let (id, token) = (random_u64() as u16, random_u64());
    let start = tokio::time::Instant::now();
    let deadline = start + plan.budget;
    let mut sent_at: Vec<Option<Instant>> = vec![None; plan.count as usize];
    let mut rtts = Vec::with_capacity(sent_at.len());
    let mut next = 0usize;
    let mut last_err = None;
    while rtts.len() < sent_at.len() {
        let send_at = start + plan.gap * next as u32;
        tokio::select! {
            _ = tokio::time::sleep_until(send_at), if next < sent_at.len() => {
                let req = packet::echo_request(v6, id, next as u16, token);
                match fd.get_ref().send(&req) {
                    Ok(_) => sent_at[next] = Some(Instant::now()),
                    Err(e) => last_err = Some(e),
                }
                next += 1;
                if next == sent_at.len() && sent_at.iter().all(Option::is_none) {
                    break;
                }
            }
            ready = fd.readable() => {
                let mut guard = ready?;
                let mut buf = [0u8; 1500];
                match guard.try_io(|s| s.get_ref().read(&mut buf)) {
                    Ok(Ok(n)) => {
                        let seq = packet::parse_reply(v6, kind, &buf[..n], id, token);
                        let slot = seq.and_then(|s| sent_at.get_mut(usize::from(s)));
                        if let Some(at) = slot.and_then(Option::take) {
                            rtts.push(at.elapsed());
                        }
                    }
                    // An ICMP error for a ping socket (host unreachable): keep waiting.
                    Ok(Err(e)) => last_err = Some(e),
                    Err(_would_block) => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    match last_err {
        Some(e)
            if rtts.is_empty() && next == sent_at.len() && sent_at.iter().all(Option::is_none) =>
        {
            Err(e)
        }
        _ => Ok(rtts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Verdict;

    #[test]
    fn plan_spreads_requests_inside_the_timeout() {
        let p = Plan::new(3, Some(Duration::from_secs(1)));
        assert_eq!(p.budget, Duration::from_millis(900));
        assert_eq!(p.gap, MAX_GAP);
        let tight = Plan::new(100, Some(Duration::from_secs(1)));
        assert!(tight.gap * 99 < tight.budget, "{tight:?}");
        let none = Plan::new(0, None);
        assert_eq!((none.count, none.budget), (1, NO_TIMEOUT_WAIT));
    }

    #[test]
    fn one_reply_passes_with_the_average_rtt() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let budget = Duration::from_secs(1);
        let o = judge(
            ip,
            3,
            &[Duration::from_millis(1), Duration::from_millis(3)],
            budget,
        );
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(o.rtt, Some(Duration::from_millis(2)));
        let none = judge(ip, 3, &[], budget);
        assert_eq!((none.verdict, none.cause), (Verdict::Fail, Cause::NoReply));
        assert_eq!(none.detail, "127.0.0.1: 0/3 echo replies within 1s");
    }

    /// Loopback echo works as root (raw socket) or with open ping sockets;
    /// otherwise the check must say Unavailable, never pass.
    #[tokio::test]
    async fn loopback_answers_or_is_unavailable() {
        for host in ["127.0.0.1", "::1"] {
            let t = Target::new(host, 0);
            let o = check(2, &t, Some(Duration::from_secs(2))).await;
            match o.verdict {
                Verdict::Pass => assert!(o.rtt.is_some()),
                _ => assert_eq!(o.cause, Cause::Unavailable, "{host}: {o:?}"),
            }
            eprintln!("{host}: {o:?}");
        }
    }
}

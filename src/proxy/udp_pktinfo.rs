//! The local address of each datagram on a wildcard-bound UDP socket.
//!
//! A socket bound to `0.0.0.0` / `[::]` receives datagrams sent to any of the
//! host's addresses, but a plain `send_to` lets the kernel pick the reply's
//! source address from the route, which may not be the address the client
//! contacted (so the client drops the reply). With `IP_PKTINFO` /
//! `IPV6_RECVPKTINFO` set, `recvmsg` reports each datagram's destination
//! address in a control message ([`recv`]); the reply is sent with `sendmsg`
//! carrying that address as its source ([`send`]).
//!
//! The control-message encoding ([`encode`]) and decoding ([`decode`]) are
//! small functions over a byte buffer, tested in place.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Where a datagram arrived: its destination address (and, for IPv6
/// link-local addresses, the interface, which the reply must leave by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub addr: IpAddr,
    pub ifindex: u32,
}

/// Room for the control messages we ask for (IP_PKTINFO and IPV6_PKTINFO
/// may both come on a dual-stack socket), aligned for `cmsghdr`.
#[repr(C, align(8))]
pub struct CmsgBuf(pub [u8; 128]);

impl CmsgBuf {
    pub fn new() -> Self {
        Self([0; 128])
    }
}

impl Default for CmsgBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// Ask the kernel for each datagram's destination address (`v6`: the socket
/// is AF_INET6; both options are set so dual-stack IPv4 datagrams report too).
pub fn enable(socket: &socket2::Socket, v6: bool) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    if v6 {
        setsockopt_on(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
        // Dual-stack: IPv4 datagrams report IP_PKTINFO (best effort).
        let _ = setsockopt_on(fd, libc::IPPROTO_IP, libc::IP_PKTINFO);
        Ok(())
    } else {
        setsockopt_on(fd, libc::IPPROTO_IP, libc::IP_PKTINFO)
    }
}

fn setsockopt_on(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call; the length matches its type.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The destination address in the control messages `control[..len]`.
pub fn decode(control: &CmsgBuf, len: usize) -> Option<Local> {
    // SAFETY: an all-zero msghdr is valid; only its control fields are read
    // by the CMSG_* macros, and they point into `control`, whose `len` bytes
    // the kernel (or `encode`) wrote; every header and payload read below is
    // bounds-checked against that length first.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_control = control.0.as_ptr() as *mut libc::c_void;
        msg.msg_controllen = len.min(control.0.len()) as _;
        let end = control.0.as_ptr().add(len.min(control.0.len()));
        let mut found = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            // A length past the end stops the walk: CMSG_NXTHDR would
            // overflow on a huge one (a debug build aborts in there).
            let room = end as usize - cmsg as usize;
            if (*cmsg).cmsg_len as usize > room {
                break;
            }
            let data = libc::CMSG_DATA(cmsg).cast_const();
            let payload = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && payload >= size_of::<libc::in_pktinfo>()
                && data.add(size_of::<libc::in_pktinfo>()) <= end
            {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                let addr = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                found = Some(Local {
                    addr: IpAddr::V4(addr),
                    ifindex: info.ipi_ifindex as u32,
                });
            } else if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && payload >= size_of::<libc::in6_pktinfo>()
                && data.add(size_of::<libc::in6_pktinfo>()) <= end
                && found.is_none()
            {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                found = Some(Local {
                    addr: IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
                    ifindex: info.ipi6_ifindex,
                });
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        found
    }
}

/// Write the control message that makes a reply leave from `local` on a
/// socket of the given family into `control`; returns its length (0: no
/// usable source, send without one).
pub fn encode(local: &Local, socket_v6: bool, control: &mut CmsgBuf) -> usize {
    if socket_v6 {
        let addr = match local.addr {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        // The interface only matters (and is only safe to force) for
        // link-local addresses; otherwise routing picks it.
        let ifindex = if addr.is_unicast_link_local() {
            local.ifindex
        } else {
            0
        };
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: addr.octets(),
            },
            ipi6_ifindex: ifindex,
        };
        put(control, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
    } else {
        let addr = match local.addr {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => a,
                None => return 0,
            },
        };
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(addr).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        put(control, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
    }
}

/// One control message holding `value`; returns the control length.
fn put<T>(control: &mut CmsgBuf, level: libc::c_int, kind: libc::c_int, value: T) -> usize {
    // SAFETY: CMSG_SPACE of a pktinfo struct (<= 40 bytes) fits the 128-byte,
    // 8-aligned buffer, so the header and the unaligned payload write stay
    // inside it.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<T>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        control.0[..space].fill(0);
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return 0;
        }
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<T>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), value);
        space
    }
}

/// Receive one datagram: (length, sender, destination address if reported).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Local>)> {
    let mut control = CmsgBuf::new();
    let mut control_len = 0usize;
    // SAFETY: try_init hands us storage for the sender's address; recvmsg
    // writes at most the lengths we give for the name, the buffer and the
    // control area, all of which outlive the call.
    let (n, from) = unsafe {
        socket2::SockAddr::try_init(|storage, name_len| {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *name_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control.0.len() as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *name_len = msg.msg_namelen;
            control_len = msg.msg_controllen as usize;
            Ok(n as usize)
        })?
    };
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP sender"))?;
    Ok((n, from, decode(&control, control_len)))
}

/// Send `data` to `to` from `local` (a plain send_to when `local` is `None`).
pub fn send(
    fd: RawFd,
    socket_v6: bool,
    data: &[u8],
    to: SocketAddr,
    local: Option<&Local>,
) -> io::Result<usize> {
    let to = socket2::SockAddr::from(to);
    let mut control = CmsgBuf::new();
    let control_len = local.map_or(0, |l| encode(l, socket_v6, &mut control));
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: every pointer in msg refers to a live local for the call; the
    // kernel only reads through them.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if control_len > 0 {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control_len as _;
        }
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(addr: &str, ifindex: u32) -> Local {
        Local {
            addr: addr.parse().unwrap(),
            ifindex,
        }
    }

    #[test]
    fn an_ipv4_source_round_trips_on_an_ipv4_socket() {
        let mut buf = CmsgBuf::new();
        let len = encode(&local("127.0.0.2", 7), false, &mut buf);
        // SAFETY: CMSG_SPACE only computes a length.
        let space = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as usize;
        assert_eq!(len, space);
        // encode sets ipi_spec_dst (the source to use), decode reads ipi_addr
        // (the header's destination): check the bytes, not a round trip.
        // SAFETY: the payload follows the header inside the 128-byte buffer.
        let info: libc::in_pktinfo = unsafe {
            std::ptr::read_unaligned(buf.0.as_ptr().add(libc::CMSG_LEN(0) as usize).cast())
        };
        assert_eq!(u32::from_be(info.ipi_spec_dst.s_addr), 0x7f00_0002);
        assert_eq!(info.ipi_ifindex, 0, "routing picks the interface");
    }

    #[test]
    fn a_received_ipv4_pktinfo_yields_the_header_destination() {
        let mut buf = CmsgBuf::new();
        let info = libc::in_pktinfo {
            ipi_ifindex: 3,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::new(127, 0, 0, 1)).to_be(),
            },
            ipi_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::new(127, 0, 0, 2)).to_be(),
            },
        };
        let len = put(&mut buf, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
        assert_eq!(decode(&buf, len), Some(local("127.0.0.2", 3)));
    }

    #[test]
    fn an_ipv6_source_round_trips() {
        let mut buf = CmsgBuf::new();
        let len = encode(&local("::1", 1), true, &mut buf);
        assert_eq!(decode(&buf, len), Some(local("::1", 0)));
        let len = encode(&local("fe80::1", 4), true, &mut buf);
        assert_eq!(
            decode(&buf, len),
            Some(local("fe80::1", 4)),
            "link-local keeps its interface"
        );
    }

    #[test]
    fn an_ipv4_source_on_a_dual_stack_socket_is_sent_v4_mapped() {
        let mut buf = CmsgBuf::new();
        let len = encode(&local("127.0.0.2", 0), true, &mut buf);
        assert_eq!(decode(&buf, len), Some(local("::ffff:127.0.0.2", 0)));
    }

    #[test]
    fn an_ipv6_source_cannot_go_out_of_an_ipv4_socket() {
        let mut buf = CmsgBuf::new();
        assert_eq!(encode(&local("::1", 0), false, &mut buf), 0);
        assert!(encode(&local("::ffff:127.0.0.3", 0), false, &mut buf) > 0);
    }

    #[test]
    fn empty_truncated_or_foreign_control_data_yields_nothing() {
        let mut buf = CmsgBuf::new();
        assert_eq!(decode(&buf, 0), None);
        let len = put(&mut buf, libc::SOL_SOCKET, libc::SO_TIMESTAMP, [0u8; 16]);
        assert_eq!(decode(&buf, len), None);
        let len = encode(&local("127.0.0.2", 0), false, &mut buf);
        assert_eq!(decode(&buf, len - 8), None, "payload cut short");
    }

    #[test]
    fn sockets_report_and_use_the_contacted_address() {
        let server =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        enable(&server, false).unwrap();
        server
            .bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
            .unwrap();
        let port = server.local_addr().unwrap().as_socket().unwrap().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        client.send_to(b"hi", ("127.0.0.2", port)).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        // Blocking socket: MSG_DONTWAIT may find nothing yet, so wait first.
        let mut peek = [std::mem::MaybeUninit::new(0u8); 1];
        server.peek(&mut peek).unwrap();
        let (n, from, dst) = recv(server.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(from, client.local_addr().unwrap());
        let dst = dst.expect("IP_PKTINFO reported");
        assert_eq!(dst.addr, IpAddr::from([127, 0, 0, 2]));
        send(server.as_raw_fd(), false, b"ho", from, Some(&dst)).unwrap();
        let (n, src) = client.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], src),
            (&b"ho"[..], SocketAddr::from(([127, 0, 0, 2], port)))
        );
    }
}

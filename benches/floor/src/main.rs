//! floor-proxy: the smallest single-threaded epoll TCP relay, a floor for
//! benches/harness/run to compare proxies against (case `floor`).
//!
//! `floor-proxy LPORT:BPORT [LPORT:BPORT ...]` listens on 127.0.0.1:LPORT and
//! relays each connection to 127.0.0.1:BPORT. Per connection it makes the
//! syscalls any relay needs and nothing else: accept, socket, TCP_NODELAY,
//! connect, two epoll registrations, then recv/send until EAGAIN on each
//! readable edge, `shutdown(SHUT_WR)` to pass a FIN on, and close once both
//! directions ended. No balancing, timeouts, statistics or logging.
//!
//! When a peer's send buffer is full it blocks in `poll()` until it drains,
//! which stalls every other connection meanwhile: fine for one-connection
//! and small-request tests, not a model for many concurrent bulk streams.

use std::io;

struct Conn {
    peer: i32,
    read_done: bool,
}

fn fail(what: &str) -> ! {
    eprintln!("floor-proxy: {what}: {}", io::Error::last_os_error());
    std::process::exit(1)
}

fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
    a
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: valid fd and a 4-byte option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            4,
        )
    };
}

fn listen(port: u16) -> i32 {
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let a = loopback(port);
        if fd < 0
            || libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), ADDR_LEN) != 0
            || libc::listen(fd, 4096) != 0
        {
            fail(&format!("listen on 127.0.0.1:{port}"));
        }
        fd
    }
}

fn watch(ep: i32, fd: i32, events: u32) {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: valid epoll and fd; `ev` lives across the call.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
}

struct Proxy {
    ep: i32,
    /// Backend port by listening fd.
    routes: Vec<(i32, u16)>,
    /// Connection state by fd.
    conns: Vec<Option<Conn>>,
    buf: Vec<u8>,
}

impl Proxy {
    fn accept(&mut self, lfd: i32, bport: u16) {
        let backend = loopback(bport);
        loop {
            // SAFETY: accept with no address out-parameters.
            let c = unsafe {
                libc::accept4(
                    lfd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK,
                )
            };
            if c < 0 {
                return;
            }
            // SAFETY: a new socket we own.
            let b =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
            if b < 0 {
                // SAFETY: closing our own descriptor.
                unsafe { libc::close(c) };
                continue;
            }
            nodelay(c);
            nodelay(b);
            // SAFETY: `backend` is a valid sockaddr_in; EINPROGRESS is fine (send waits in poll).
            unsafe { libc::connect(b, (&backend as *const libc::sockaddr_in).cast(), ADDR_LEN) };
            let edge = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            watch(self.ep, c, edge);
            watch(self.ep, b, edge);
            let need = c.max(b) as usize + 1;
            if self.conns.len() < need {
                self.conns.resize_with(need, || None);
            }
            self.conns[c as usize] = Some(Conn {
                peer: b,
                read_done: false,
            });
            self.conns[b as usize] = Some(Conn {
                peer: c,
                read_done: false,
            });
            self.relay(c);
        }
    }

    /// Copy from `fd` to its peer until EAGAIN, EOF or an error.
    fn relay(&mut self, fd: i32) {
        let Some(Some(conn)) = self.conns.get(fd as usize) else {
            return;
        };
        if conn.read_done {
            return;
        }
        let peer = conn.peer;
        loop {
            // SAFETY: reads into our buffer of the given length.
            let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n > 0 {
                if !send_all(peer, &self.buf[..n as usize]) {
                    return self.close(fd, peer);
                }
            } else if n == 0 {
                // SAFETY: shutdown of our own socket.
                unsafe { libc::shutdown(peer, libc::SHUT_WR) };
                let peer_done = self.conns[peer as usize]
                    .as_ref()
                    .is_some_and(|p| p.read_done);
                if peer_done {
                    return self.close(fd, peer);
                }
                if let Some(c) = self.conns[fd as usize].as_mut() {
                    c.read_done = true;
                }
                return;
            } else if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                return;
            } else {
                return self.close(fd, peer);
            }
        }
    }

    fn close(&mut self, a: i32, b: i32) {
        for fd in [a, b] {
            self.conns[fd as usize] = None;
            // SAFETY: closing our own descriptor (also leaves the epoll set).
            unsafe { libc::close(fd) };
        }
    }
}

/// Send all of `data`, waiting in poll() while the socket is full.
fn send_all(fd: i32, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: sends from a live slice.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
            return false;
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, -1) };
    }
    true
}

/// Soft descriptor limit up to the hard one (the harness opens thousands).
fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/set our own limits through a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() {
    let mut routes = Vec::new();
    for arg in std::env::args().skip(1) {
        let ports = arg
            .split_once(':')
            .and_then(|(l, b)| Some((l.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
        let Some((lport, bport)) = ports else {
            eprintln!("usage: floor-proxy LPORT:BPORT [LPORT:BPORT ...] (got {arg:?})");
            std::process::exit(2);
        };
        routes.push((listen(lport), bport));
    }
    raise_fd_limit();
    if routes.is_empty() {
        eprintln!("usage: floor-proxy LPORT:BPORT [LPORT:BPORT ...]");
        std::process::exit(2);
    }
    // SAFETY: creating an epoll instance.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        fail("epoll_create1");
    }
    for &(lfd, _) in &routes {
        watch(ep, lfd, libc::EPOLLIN as u32);
    }
    let mut proxy = Proxy {
        ep,
        routes,
        conns: Vec::new(),
        buf: vec![0; 64 * 1024],
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        for ev in events.iter().take(n.max(0) as usize) {
            let fd = ev.u64 as i32;
            match proxy.routes.iter().find(|(l, _)| *l == fd) {
                Some(&(lfd, bport)) => proxy.accept(lfd, bport),
                None => proxy.relay(fd),
            }
        }
    }
}

//! udpload: echo backend and closed-loop load generator for
//! benches/harness/udp. Single-threaded, libc only, loopback only.
//!
//! `udpload echo PORT` answers every datagram on 127.0.0.1:PORT with the same
//! bytes, batched with recvmmsg/sendmmsg (up to 64 per call), until killed.
//!
//! `udpload load PORT CONC SECS SIZE TIMEOUT_MS WARMUP_MS fresh|pool`
//! keeps CONC requests outstanding, one per client socket (so CONC client
//! ports), each SIZE bytes, to 127.0.0.1:PORT for SECS seconds. A reply
//! triggers the next request on the same socket (`pool`) or on a new socket
//! from a new ephemeral port (`fresh`: the old one is closed). A request
//! with no reply within TIMEOUT_MS is lost; the slot sends a new one. At the
//! end it waits up to TIMEOUT_MS for outstanding replies. Requests sent in
//! the first WARMUP_MS are not counted. Prints one line of `key=value`:
//! sent, replies, lost, late (replies to requests already counted lost),
//! errors (recv/send errors), secs, rps, p50_us, p99_us.

use std::io;
use std::time::{Duration, Instant};

fn fail(what: &str) -> ! {
    eprintln!("udpload: {what}: {}", io::Error::last_os_error());
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
const BATCH: usize = 64;

fn echo(port: u16) -> ! {
    // SAFETY: plain socket calls on descriptors we own; the mmsghdr arrays
    // point into buffers that outlive every call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            fail("socket");
        }
        let big: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&big as *const libc::c_int).cast(), 4);
        }
        let a = loopback(port);
        if libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), ADDR_LEN) != 0 {
            fail("bind");
        }
        let mut bufs = vec![[0u8; 2048]; BATCH];
        let mut addrs: Vec<libc::sockaddr_in> = vec![std::mem::zeroed(); BATCH];
        let mut iovs: Vec<libc::iovec> = vec![std::mem::zeroed(); BATCH];
        let mut msgs: Vec<libc::mmsghdr> = vec![std::mem::zeroed(); BATCH];
        loop {
            for i in 0..BATCH {
                iovs[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr().cast(),
                    iov_len: bufs[i].len(),
                };
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = ADDR_LEN;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                msgs[i].msg_len = 0;
            }
            let n = libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            );
            if n <= 0 {
                continue;
            }
            for i in 0..n as usize {
                iovs[i].iov_len = msgs[i].msg_len as usize;
            }
            libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0);
        }
    }
}

struct Slot {
    fd: i32,
    seq: u64,
    sent: Instant,
    counted: bool,
}

struct Load {
    port: u16,
    size: usize,
    fresh: bool,
    epfd: i32,
    origin: Instant,
    measure_from: Instant,
    next_seq: u64,
    sent: u64,
    replies: u64,
    lost: u64,
    late: u64,
    errors: u64,
    lat_us: Vec<u32>,
}

impl Load {
    fn socket(&self, idx: usize) -> i32 {
        // SAFETY: plain socket calls on a descriptor we own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0);
            if fd < 0 {
                fail("socket");
            }
            let a = loopback(self.port);
            if libc::connect(fd, (&a as *const libc::sockaddr_in).cast(), ADDR_LEN) != 0 {
                fail("connect");
            }
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: idx as u64,
            };
            if libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) != 0 {
                fail("epoll_ctl");
            }
            fd
        }
    }

    fn send(&mut self, slot: &mut Slot, now: Instant) {
        self.next_seq += 1;
        slot.seq = self.next_seq;
        slot.sent = now;
        slot.counted = now >= self.measure_from;
        let mut buf = vec![0u8; self.size.max(8)];
        buf[..8].copy_from_slice(&slot.seq.to_le_bytes());
        // SAFETY: valid descriptor and buffer.
        let r = unsafe { libc::send(slot.fd, buf.as_ptr().cast(), self.size.max(8), 0) };
        if r < 0 {
            self.errors += 1;
        }
        if slot.counted {
            self.sent += 1;
        }
    }

    /// The slot's request is answered or lost: maybe renew the socket.
    fn renew(&mut self, slot: &mut Slot, idx: usize) {
        if self.fresh {
            // SAFETY: closing a descriptor we own (also leaves the epoll set).
            unsafe { libc::close(slot.fd) };
            slot.fd = self.socket(idx);
        }
    }

    /// Read every queued datagram of a slot; true if its request was answered.
    fn read(&mut self, slot: &mut Slot, now: Instant) -> bool {
        let mut buf = [0u8; 2048];
        let mut answered = false;
        loop {
            // SAFETY: valid descriptor and buffer.
            let n = unsafe { libc::recv(slot.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.errors += 1;
                    continue;
                }
                return answered;
            }
            let seq = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
            if n >= 8 && seq == slot.seq && slot.seq != 0 {
                if slot.counted {
                    self.replies += 1;
                    let us = now.duration_since(slot.sent).as_micros();
                    self.lat_us.push(us.min(u32::MAX as u128) as u32);
                }
                slot.seq = 0;
                answered = true;
            } else {
                self.late += 1;
            }
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    match args.get(i).and_then(|s| s.parse().ok()) {
        Some(v) => v,
        None => {
            eprintln!("udpload: bad or missing {what}");
            std::process::exit(2)
        }
    }
}

fn load(args: &[String]) {
    let port: u16 = arg(args, 2, "PORT");
    let conc: usize = arg(args, 3, "CONC");
    let secs: f64 = arg(args, 4, "SECS");
    let size: usize = arg(args, 5, "SIZE");
    let timeout = Duration::from_millis(arg(args, 6, "TIMEOUT_MS"));
    let warmup = Duration::from_millis(arg(args, 7, "WARMUP_MS"));
    let fresh = args.get(8).map(String::as_str) == Some("fresh");
    if !(0.1..=10.0).contains(&secs) || conc == 0 || conc > 4096 {
        eprintln!("udpload: SECS must be 0.1..=10, CONC 1..=4096");
        std::process::exit(2)
    }
    // SAFETY: epoll_create1 has no memory arguments.
    let epfd = unsafe { libc::epoll_create1(0) };
    if epfd < 0 {
        fail("epoll_create1");
    }
    let origin = Instant::now();
    let mut l = Load {
        port,
        size,
        fresh,
        epfd,
        origin,
        measure_from: origin + warmup,
        next_seq: 0,
        sent: 0,
        replies: 0,
        lost: 0,
        late: 0,
        errors: 0,
        lat_us: Vec::with_capacity(1 << 20),
    };
    let end = origin + warmup + Duration::from_secs_f64(secs);
    let mut slots: Vec<Slot> = (0..conc)
        .map(|i| Slot {
            fd: l.socket(i),
            seq: 0,
            sent: origin,
            counted: false,
        })
        .collect();
    for s in slots.iter_mut() {
        l.send(s, Instant::now());
    }
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut last_scan = Instant::now();
    // Closed loop until `end`, then drain outstanding replies (bounded by `timeout`).
    let hard_end = end + timeout + Duration::from_millis(50);
    loop {
        let now = Instant::now();
        let draining = now >= end;
        if now >= hard_end || (draining && slots.iter().all(|s| s.seq == 0)) {
            break;
        }
        // SAFETY: events has room for 256 entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), 256, 5) };
        let now = Instant::now();
        for ev in events.iter().take(n.max(0) as usize) {
            let idx = ev.u64 as usize;
            let mut slot = std::mem::replace(
                &mut slots[idx],
                Slot { fd: -1, seq: 0, sent: origin, counted: false },
            );
            if l.read(&mut slot, now) && now < end {
                l.renew(&mut slot, idx);
                l.send(&mut slot, now);
            }
            slots[idx] = slot;
        }
        if now.duration_since(last_scan) >= Duration::from_millis(5) {
            last_scan = now;
            for (idx, slot) in slots.iter_mut().enumerate() {
                if slot.seq != 0 && now.duration_since(slot.sent) >= timeout {
                    if slot.counted {
                        l.lost += 1;
                    }
                    slot.seq = 0;
                    if now < end {
                        l.renew(slot, idx);
                        l.send(slot, now);
                    }
                }
            }
        }
    }
    for s in &slots {
        if s.seq != 0 && s.counted {
            l.lost += 1;
        }
    }
    let window = secs;
    let _ = l.origin;
    l.lat_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        if l.lat_us.is_empty() {
            return 0;
        }
        let i = ((l.lat_us.len() as f64 * p).ceil() as usize).clamp(1, l.lat_us.len()) - 1;
        l.lat_us[i]
    };
    println!(
        "sent={} replies={} lost={} late={} errors={} secs={:.3} rps={:.1} p50_us={} p99_us={}",
        l.sent,
        l.replies,
        l.lost,
        l.late,
        l.errors,
        window,
        l.replies as f64 / window,
        pct(0.50),
        pct(0.99)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo") => echo(arg(&args, 2, "PORT")),
        Some("load") => load(&args),
        _ => {
            eprintln!(
                "usage: udpload echo PORT | udpload load PORT CONC SECS SIZE TIMEOUT_MS WARMUP_MS fresh|pool"
            );
            std::process::exit(2)
        }
    }
}

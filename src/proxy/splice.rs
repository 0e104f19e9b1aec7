//! Raw non-blocking syscalls of the data path and a per-thread pipe pool.
//!
//! Pipes are taken from the pool only while a direction is in bulk (splice)
//! mode and given back once empty, so an idle connection holds none: a pipe
//! costs two descriptors and kernel memory even when empty.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes a pipe is asked to hold (`F_SETPIPE_SZ`); the kernel may give less.
pub const PIPE_SIZE: usize = 256 * 1024;
/// Idle pipes kept per worker thread.
const POOL_CAP: usize = 32;

/// A non-blocking pipe used as the splice buffer of one direction.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// The capacity the kernel granted.
    pub capacity: usize,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    fn create() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on a descriptor we own.
        let granted = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        // SAFETY: as above.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = if granted > 0 { granted } else { size.max(4096) } as usize;
        Ok(Self {
            read,
            write,
            capacity,
        })
    }

    /// A pipe from this thread's pool, or a new one.
    pub fn take() -> io::Result<Self> {
        match POOL.with(|p| p.borrow_mut().pop()) {
            Some(pipe) => Ok(pipe),
            None => Self::create(),
        }
    }

    /// Return an EMPTY pipe to the pool (a pipe holding data must be dropped).
    pub fn give_back(self) {
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL_CAP {
                pool.push(self);
            }
        });
    }

    /// Move up to `len` bytes from socket `from` into the pipe.
    pub fn fill_from(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Move up to `len` bytes from the pipe into socket `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // No SPLICE_F_MORE: it corks TCP and adds 200 ms per hop to small replies.
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: null offsets are allowed for pipes and sockets; fds are open.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv` on a non-blocking socket.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `send` on a non-blocking socket, without SIGPIPE.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send_flags(fd, buf, 0)
}

/// [`send`] with `MSG_MORE`: the kernel holds the bytes back for what
/// follows, here the FIN of a `shutdown`, which then leaves with them in one
/// segment (a send without `MSG_MORE`, a shutdown or a close releases them).
pub fn send_more(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send_flags(fd, buf, libc::MSG_MORE)
}

fn send_flags(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    let flags = flags | libc::MSG_NOSIGNAL;
    // SAFETY: the buffer is valid for reads of its length.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Half-close: no more bytes will be written to `fd`.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown on an open socket descriptor.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 {
        let e = io::Error::last_os_error();
        // The peer may already be gone; that is not an error for a half-close.
        if e.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn splices_socket_to_socket_through_a_pooled_pipe() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        let l2 = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l2.local_addr().expect("addr")).expect("connect");
        let (mut d, _) = l2.accept().expect("accept");
        b.set_nonblocking(true).expect("nb");
        c.set_nonblocking(true).expect("nb");

        a.write_all(b"hello splice").expect("write");
        let pipe = Pipe::take().expect("pipe");
        assert!(pipe.capacity >= 4096);
        let mut n = 0;
        for _ in 0..1000 {
            match pipe.fill_from(b.as_raw_fd(), 1 << 16) {
                Ok(got) => {
                    n = got;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(n, 12);
        assert_eq!(pipe.drain_to(c.as_raw_fd(), n).expect("drain"), 12);
        pipe.give_back();
        let mut got = [0u8; 12];
        d.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello splice");
        let again = Pipe::take().expect("pooled");
        assert!(again.capacity >= 4096);
    }
}

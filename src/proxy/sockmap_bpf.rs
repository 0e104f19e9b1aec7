//! The aya side of the sockmap fast path: load `ebpf/lb.bpf.c` (compiled by
//! build.rs), attach its verdict program to the `gate` map, and add and
//! remove connection pairs. Built only with feature "ebpf" and the object.
//!
//! Maps (see the C file): `socks` (redirect targets), `gate` (the verdict
//! runs here), `peers` (cookie -> peer cookie and byte counters).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use aya::maps::{HashMap, MapData, SockHash};
use aya::programs::SkSkb;
use aya::{Ebpf, Pod};

use super::sockmap::{PairCookies, error_chain};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb.bpf.o"));

/// `struct pair` of the C program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Pair {
    peer: u64,
    bytes: u64,
    passed: u64,
}

// SAFETY: `Pair` is `repr(C)`, three u64 without padding; any bit pattern is valid.
unsafe impl Pod for Pair {}

struct Maps {
    socks: SockHash<MapData, u64>,
    gate: SockHash<MapData, u64>,
    peers: HashMap<MapData, u64, Pair>,
}

/// The loaded program and its maps; dropping it detaches everything.
pub struct Loaded {
    /// Holds the attached program (its link goes with it).
    _ebpf: Mutex<Ebpf>,
    maps: Mutex<Maps>,
}

/// Why gating a pair failed.
pub enum GateError {
    /// Nothing moved: the pair is out of every map, relay it normally.
    Undone(String),
    /// The first socket was gated (and is not any more): the kernel may
    /// have redirected some of its bytes to the second. Wait until a verdict
    /// still running is done, then until the second socket has taken
    /// [`Loaded::moved`] bytes ([`super::sockmap::flushed`]), then
    /// [`Loaded::release`].
    Partial(String),
}

impl Loaded {
    /// Load the object and attach the verdict program.
    pub fn load() -> Result<Self, String> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| error_chain("loading BPF object", &e))?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| format!("BPF object has no map {name:?}"))
        };
        let socks = SockHash::try_from(take("socks")?).map_err(|e| error_chain("socks", &e))?;
        let gate = SockHash::try_from(take("gate")?).map_err(|e| error_chain("gate", &e))?;
        let peers = HashMap::try_from(take("peers")?).map_err(|e| error_chain("peers", &e))?;
        let gate_fd = gate
            .fd()
            .try_clone()
            .map_err(|e| error_chain("gate fd", &e))?;
        let program: &mut SkSkb = ebpf
            .program_mut("lb_verdict")
            .ok_or("BPF object has no program lb_verdict")?
            .try_into()
            .map_err(|e| error_chain("lb_verdict", &e))?;
        program
            .load()
            .map_err(|e| error_chain("loading lb_verdict", &e))?;
        program
            .attach(&gate_fd)
            .map_err(|e| error_chain("attaching lb_verdict", &e))?;
        Ok(Self {
            _ebpf: Mutex::new(ebpf),
            maps: Mutex::new(Maps { socks, gate, peers }),
        })
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gate a connected pair (race-free for early data both ways): peers
    /// both ways, both sockets into `socks`, then both into `gate`, then the
    /// `SO_RCVLOWAT` kick so that bytes queued before the gate are run
    /// through the verdict. On failure everything is undone that can be.
    /// `between` runs between the two `gate` inserts, with the maps locked
    /// (a no-op but in tests, which change a socket's state there).
    pub fn gate(
        &self,
        c: PairCookies,
        fds: [RawFd; 2],
        between: impl FnOnce(),
    ) -> Result<(), GateError> {
        let mut m = self.maps();
        let undo = |m: &mut Maps, why: String| {
            remove_all(m, c);
            GateError::Undone(why)
        };
        for (me, peer) in [(c.0[0], c.0[1]), (c.0[1], c.0[0])] {
            let pair = Pair {
                peer,
                ..Pair::default()
            };
            if let Err(e) = m.peers.insert(me, pair, 0) {
                return Err(undo(&mut m, error_chain("peers insert", &e)));
            }
        }
        for (key, fd) in c.0.into_iter().zip(fds) {
            if let Err(e) = m.socks.insert(key, Fd(fd), 0) {
                return Err(undo(&mut m, error_chain("socks insert", &e)));
            }
        }
        if let Err(e) = m.gate.insert(c.0[0], Fd(fds[0]), 0) {
            return Err(undo(&mut m, error_chain("gate insert", &e)));
        }
        between();
        if let Err(e) = m.gate.insert(c.0[1], Fd(fds[1]), 0) {
            // The first socket's verdict may have run already: stop it;
            // the caller sees what it moved.
            let _ = m.gate.remove(&c.0[0]);
            return Err(GateError::Partial(error_chain("gate insert", &e)));
        }
        drop(m);
        for fd in fds {
            kick(fd);
        }
        Ok(())
    }

    /// Bytes the kernel redirected from each socket of the pair so far.
    pub fn moved(&self, c: PairCookies) -> [u64; 2] {
        let m = self.maps();
        c.0.map(|k| m.peers.get(&k, 0).map(|p| p.bytes).unwrap_or(0))
    }

    /// Take the pair out of every map (closing the sockets would take them
    /// out of the sockhashes, but not out of `peers`).
    pub fn release(&self, c: PairCookies) {
        remove_all(&mut self.maps(), c);
    }

    /// The maps that still hold a socket of the pair (tests).
    #[cfg(test)]
    pub fn holding(&self, c: PairCookies) -> Vec<&'static str> {
        let m = self.maps();
        let mut out = Vec::new();
        let mine = |k: Result<u64, aya::maps::MapError>| k.is_ok_and(|k| c.0.contains(&k));
        if m.socks.keys().any(mine) {
            out.push("socks");
        }
        if m.gate.keys().any(mine) {
            out.push("gate");
        }
        if c.0.iter().any(|k| m.peers.get(k, 0).is_ok()) {
            out.push("peers");
        }
        out
    }
}

fn remove_all(m: &mut Maps, c: PairCookies) {
    for k in c.0 {
        let _ = m.gate.remove(&k);
    }
    for k in c.0 {
        let _ = m.socks.remove(&k);
        let _ = m.peers.remove(&k);
    }
}

/// A raw descriptor for aya's `insert` (which only reads its number).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// `SO_RCVLOWAT` = 1: TCP calls `sk_data_ready` when bytes are queued, so
/// the verdict runs over what arrived before the socket was gated.
fn kick(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a valid pointer of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        // Early data then waits for the next segment; not fatal.
        crate::debug!("sockmap", "SO_RCVLOWAT: {}", io::Error::last_os_error());
    }
}

//! A reload whose config read blocks (a slow file system, a host name in a
//! `bind` that the resolver takes long to answer) must not stall traffic,
//! also on a single CPU, where the runtime has one thread.

mod common;

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use common::*;

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Write `text` into the FIFO once a reader opens it (in the background).
fn feed(fifo: &Path, text: &str) -> std::thread::JoinHandle<()> {
    let (fifo, text) = (fifo.to_path_buf(), text.to_string());
    std::thread::spawn(move || {
        let _ = std::fs::write(fifo, text);
    })
}

/// The greeting through the proxy, or "" if none came within 2 s.
fn greeting(port: u16) -> String {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    line.trim().to_string()
}

#[test]
fn a_blocked_config_read_does_not_stall_traffic_on_one_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("betwixt.toml");
    mkfifo(&fifo);
    let a = Backend::start("A");
    let port = free_port();
    let cfg = config(port, "roundrobin", &[a.line()], "");
    let start = feed(&fifo, &cfg);
    let fifo_arg = fifo.to_string_lossy().into_owned();
    // The last -c wins: the FIFO, not the file spawn writes.
    let mut bx = Betwixt::spawn(&cfg, "unused.toml", &["-c", &fifo_arg], |cmd| {
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    bx.wait_listening(&[format!("127.0.0.1:{port}")]);
    start.join().expect("feed");
    assert_eq!(greeting(port), "A");

    // SIGHUP: the read blocks until someone writes the FIFO.
    bx.signal(libc::SIGHUP);
    assert!(
        bx.wait_log("SIGHUP: reloading", Duration::from_secs(5)),
        "{}",
        bx.logs()
    );
    for _ in 0..3 {
        assert_eq!(greeting(port), "A", "traffic stalled during the reload");
    }
    let reload = feed(&fifo, &cfg);
    assert!(
        bx.wait_log("reload applied", Duration::from_secs(5)),
        "{}",
        bx.logs()
    );
    reload.join().expect("feed");
    assert_eq!(greeting(port), "A");
}

//! Low-RTT bulk tuning through the real binary: after a bulk upload over
//! loopback, betwixt's own two sockets carry the tuned buffers (and `reno`
//! instead of `bbr`), or the kernel's, with `low_rtt_tuning = false`.
//! Socket state is read with `ss` (iproute2).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const UPLOAD: usize = 8 * 1024 * 1024;
/// What `LOCAL_BUFFER` (512 KiB) becomes once the kernel doubled it.
const TUNED: u64 = 1024 * 1024;

/// Socket memory and TCP info of betwixt's sockets: the one connected to
/// `backend` and the one accepted on `listen`.
struct Seen {
    to_backend: String,
    from_client: String,
}

fn ss(filter: &str) -> Option<String> {
    let out = Command::new("ss")
        .args(["-Htnmi", "state", "established", filter])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `key` in an `ss` line (`tb1048576`, `rb...`).
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Upload 8 MiB through betwixt and, with the connection still open, read
/// its sockets. None (and a printed reason) when `ss` is missing.
fn upload_and_look(extra: &str) -> Option<Seen> {
    if ss("( sport = :1 )").is_none() {
        eprintln!("skipped: `ss` (iproute2) is not available");
        return None;
    }
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend_port = backend.local_addr().expect("addr").port();
    let (got_tx, got_rx) = mpsc::channel();
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = backend.accept() else {
            return;
        };
        set_timeouts(&s);
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        while total < UPLOAD {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        let _ = got_tx.send(total);
        let _ = hold_rx.recv_timeout(Duration::from_secs(20));
    });
    let port = free_port();
    let cfg = config(
        port,
        "roundrobin",
        &[format!("127.0.0.1:{backend_port}")],
        extra,
    );
    let _bx = Betwixt::start_quiet(&cfg, &[port]);
    let mut client = connect(port);
    let chunk = vec![0x5au8; 1 << 16];
    for _ in 0..UPLOAD / chunk.len() {
        client.write_all(&chunk).expect("upload");
    }
    let got = got_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("backend read the upload");
    assert_eq!(got, UPLOAD);
    let to_backend = ss(&format!("( dport = :{backend_port} )")).unwrap_or_default();
    let from_client = ss(&format!("( sport = :{port} )")).unwrap_or_default();
    let _ = hold_tx.send(());
    let _ = client.shutdown(Shutdown::Both);
    Some(Seen {
        to_backend,
        from_client,
    })
}

#[test]
fn bulk_upload_over_loopback_gets_tuned_sockets() {
    let Some(seen) = upload_and_look("") else {
        return;
    };
    let (tb, rb) = (
        field(&seen.to_backend, "tb"),
        field(&seen.from_client, "rb"),
    );
    // Doubled 512 KiB, or less where wmem_max/rmem_max cap it (no CAP_NET_ADMIN).
    for (what, v) in [("backend send buffer", tb), ("client receive buffer", rb)] {
        let v = v.unwrap_or_else(|| panic!("no {what} in {:?}", seen.to_backend));
        assert!(
            (4096..=TUNED).contains(&v),
            "{what}: {v}\n{}",
            seen.to_backend
        );
    }
    let default_cc = sysctl("net.ipv4.tcp_congestion_control");
    let want = if default_cc.starts_with("bbr") {
        "reno"
    } else {
        default_cc.as_str()
    };
    assert!(
        seen.to_backend.contains(&format!(" {want} ")),
        "backend socket should use {want}: {}",
        seen.to_backend
    );
}

#[test]
fn tuning_off_leaves_the_kernel_settings() {
    let Some(seen) = upload_and_look("low_rtt_tuning = false") else {
        return;
    };
    let default_cc = sysctl("net.ipv4.tcp_congestion_control");
    assert!(
        seen.to_backend.contains(&format!(" {default_cc} ")),
        "backend socket should keep {default_cc}: {}",
        seen.to_backend
    );
    // Autotuning gives loopback sockets more than the tuned 1 MiB whenever
    // the sysctl maximum allows it.
    let wmem_max: u64 = sysctl("net.ipv4.tcp_wmem")
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if wmem_max > TUNED {
        let tb = field(&seen.to_backend, "tb").expect("tb");
        assert!(
            tb > TUNED,
            "autotuned send buffer: {tb}\n{}",
            seen.to_backend
        );
    }
}

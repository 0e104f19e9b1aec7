//! `lxd` discovery against a local server speaking LXD's documented REST
//! API (`GET /1.0/containers?recursion=2`) over a unix socket: config-key ports and
//! sni, stopped containers, error answers. The real daemon:
//! tests/discovery_lxd_real.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

use common::discovery::{discovery_config, logged, serves};
use common::*;

/// Serve `body` (shared, replaceable) to every request on `path`.
fn lxd_server(path: &std::path::Path, body: Arc<Mutex<String>>, requests: Arc<Mutex<Vec<String>>>) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            requests.lock().unwrap().push(first);
            let body = body.lock().unwrap().clone();
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

fn container(name: &str, status: &str, lb: &str, port: u16) -> String {
    format!(
        r#"{{"architecture":"x86_64","config":{{"user.lb":"{lb}","user.port":"{port}","user.sni":"{name}.test"}},
        "name":"{name}","status":"{status}","status_code":103,"type":"container",
        "state":{{"status":"{status}","network":{{"eth0":{{"addresses":[
          {{"family":"inet","address":"127.0.0.1","netmask":"8","scope":"global"}},
          {{"family":"inet6","address":"fe80::1","netmask":"64","scope":"link"}}],
          "state":"up","type":"broadcast"}}}}}}}}"#
    )
}

fn answer(containers: &[String]) -> String {
    format!(
        r#"{{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":[{}]}}"#,
        containers.join(",")
    )
}

#[test]
fn lxd_running_labelled_containers() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("unix.socket");
    let body = Arc::new(Mutex::new(answer(&[
        container("a", "Running", "web", a.addr.port()),
        container("b", "Stopped", "web", b.addr.port()),
        container("x", "Running", "other", b.addr.port()),
    ])));
    let requests = Arc::new(Mutex::new(Vec::new()));
    lxd_server(&sock, body.clone(), requests.clone());
    let port = free_port();
    let disc = format!(
        "kind = \"lxd\"\nlxd_server_address = \"unix:{}\"\nlxd_container_label_key = \"user.lb\"\n\
         lxd_container_label_value = \"web\"\nlxd_container_port_key = \"user.port\"\n\
         lxd_container_sni_key = \"user.sni\"\ninterval = \"100ms\"\n",
        sock.display()
    );
    let bx = Betwixt::start_quiet(&discovery_config(port, &disc), &[port]);
    assert!(serves(port, &["a"]), "{}", bx.logs());
    let first = requests.lock().unwrap()[0].clone();
    assert!(
        first.starts_with("GET /1.0/containers?recursion=2 HTTP/1.1"),
        "{first}"
    );
    *body.lock().unwrap() = answer(&[
        container("a", "Running", "web", a.addr.port()),
        container("b", "Running", "web", b.addr.port()),
    ]);
    assert!(serves(port, &["a", "b"]), "{}", bx.logs());
    *body.lock().unwrap() = r#"{"type":"error","error":"not authorized","error_code":403}"#.into();
    assert!(logged(&bx, "not authorized"), "{}", bx.logs());
    assert!(serves(port, &["a", "b"]), "keeplast: {}", bx.logs());
}

//! A self-contained demo: three tiny HTTP backends plus betwixt in front of them.
//!
//! `cargo run --release --example demo`, then `curl http://127.0.0.1:8080/`
//! a few times: each answer names the backend that served it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

fn backend(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                // Read the request head up to the blank line.
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let body = format!("hello from backend 127.0.0.1:{port}\n");
                let _ = write!(
                    &stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Ok(())
}

fn main() {
    for port in [9001, 9002, 9003] {
        if let Err(e) = backend(port) {
            eprintln!("demo: cannot start backend on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    }
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/betwixt.toml");
    println!("demo: backends on 127.0.0.1:9001-9003; betwixt on 127.0.0.1:8080");
    println!("demo: try `curl http://127.0.0.1:8080/` a few times; Ctrl-C to stop");
    println!(
        "demo: status page on http://127.0.0.1:8888/status, API on http://127.0.0.1:8888/servers"
    );
    let source = betwixt::daemon::Source {
        format: betwixt::config::Format::Toml,
        path: config,
        remote: None,
        env_vars: false,
    };
    let loaded = match source.load() {
        Ok(l) => l,
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("error: {e}"));
            std::process::exit(2);
        }
    };
    std::process::exit(betwixt::daemon::run(source, loaded, None));
}

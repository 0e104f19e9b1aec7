//! A tiny HTTP/1.1 server for discovery and config-source tests: answers
//! every request with the current status and body, and records requests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    /// This many bytes of `[` (a huge, never valid JSON body).
    Huge(usize),
}

pub struct HttpServer {
    pub addr: SocketAddr,
    answer: Arc<Mutex<(u16, Body)>>,
    /// Request line and headers of each request, as received.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new((200, Body::Bytes(Vec::new()))));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (answer.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (a, r) = (a.clone(), r.clone());
                        std::thread::spawn(move || serve(stream, a, r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            answer,
            requests,
            stop,
        }
    }

    pub fn set(&self, status: u16, body: Body) {
        *self.answer.lock().unwrap() = (status, body);
    }

    pub fn set_text(&self, text: &str) {
        self.set(200, Body::Bytes(text.as_bytes().to_vec()));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn last_request(&self) -> String {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Stop accepting (connections are then refused).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: std::net::TcpStream,
    answer: Arc<Mutex<(u16, Body)>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line),
        }
    }
    requests.lock().unwrap().push(head);
    let (status, body) = answer.lock().unwrap().clone();
    let mut w = &stream;
    let len = match &body {
        Body::Bytes(b) => b.len(),
        Body::Huge(n) => *n,
    };
    let _ = write!(
        w,
        "HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    match body {
        Body::Bytes(b) => {
            let _ = w.write_all(&b);
        }
        Body::Huge(n) => {
            let chunk = vec![b'['; 64 << 10];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                if w.write_all(&chunk[..k]).is_err() {
                    return;
                }
                left -= k;
            }
        }
    }
}

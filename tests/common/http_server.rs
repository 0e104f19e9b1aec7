//! A tiny HTTP/1.1 server for discovery and config-source tests: answers
//! every request with the current status and body, and records requests.
//! [`HttpServer::start_tls`] serves HTTPS (rustls), optionally requiring a
//! client certificate from a given CA.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
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
    https: bool,
}

#[cfg(feature = "tls")]
pub type Tls = Option<Arc<rustls::ServerConfig>>;
#[cfg(not(feature = "tls"))]
pub type Tls = Option<()>;

impl HttpServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// HTTPS with `cert`/`key` (PEM); with `client_ca`, a client
    /// certificate issued by it is required.
    #[cfg(feature = "tls")]
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Self {
        let certs = betwixt::tls::load_certs(cert).expect("cert");
        let key = betwixt::tls::load_key(key).expect("key");
        let provider = betwixt::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in betwixt::tls::load_certs(ca).expect("ca") {
                    roots.add(c).expect("ca cert");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(certs, key).expect("server config");
        Self::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Tls) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new((200, Body::Bytes(Vec::new()))));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (answer.clone(), requests.clone(), stop.clone());
        let https = tls.is_some();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // `tls` is `Option<()>` (Copy) without the "tls" feature.
                        #[allow(clippy::clone_on_copy)]
                        let (a, r, tls) = (a.clone(), r.clone(), tls.clone());
                        std::thread::spawn(move || accept(stream, tls, a, r));
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
            https,
        }
    }

    pub fn set(&self, status: u16, body: Body) {
        *self.answer.lock().unwrap() = (status, body);
    }

    pub fn set_text(&self, text: &str) {
        self.set(200, Body::Bytes(text.as_bytes().to_vec()));
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
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

fn accept(
    stream: std::net::TcpStream,
    tls: Tls,
    answer: Arc<Mutex<(u16, Body)>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    #[cfg(feature = "tls")]
    if let Some(config) = tls {
        // The handshake runs on the first read (a rejected client
        // certificate ends the connection there).
        let Ok(conn) = rustls::ServerConnection::new(config) else {
            return;
        };
        return serve(rustls::StreamOwned::new(conn, stream), answer, requests);
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    serve(stream, answer, requests)
}

fn serve(
    mut stream: impl Read + Write,
    answer: Arc<Mutex<(u16, Body)>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let mut reader = BufReader::new(&mut stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line),
        }
    }
    drop(reader);
    requests.lock().unwrap().push(head);
    let (status, body) = answer.lock().unwrap().clone();
    let w = &mut stream;
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
    let _ = w.flush();
}

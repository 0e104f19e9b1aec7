//! The tiny_http side: listener threads, auth, CORS, body limit, routing.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use tiny_http::{Header, Method, Request, Response as TinyResponse, Server};
use tokio::sync::Semaphore;

use super::auth::Expected;
use super::front::{self, Upgrade};
use super::{Commands, Shared, handlers};
use crate::config::Api;
use crate::{info, warn};

/// Largest request body accepted (larger gets 413).
pub const BODY_LIMIT: usize = 1 << 20;

/// Requests answered at once per listener, each on its own thread (a client
/// that stalls its body holds only its own); beyond, `503` at once.
const MAX_REQUESTS: usize = 64;

/// What a handler answers.
#[derive(Debug)]
pub enum Answer {
    Json(u16, serde_json::Value),
    Text(u16, &'static str, String),
}

impl Answer {
    pub fn not_found() -> Self {
        Self::Text(
            404,
            "text/plain; charset=utf-8",
            "404 page not found".into(),
        )
    }
}

struct Ctx {
    shared: Arc<Shared>,
    tx: Option<Commands>,
    auth: Option<Expected>,
    cors: bool,
}

/// Start the API listener. Binding errors are returned (the daemon refuses
/// to start without its API).
pub fn spawn_api(cfg: &Api, shared: Arc<Shared>, tx: Commands) -> io::Result<()> {
    let server = listen(cfg)?;
    let ctx = Arc::new(Ctx {
        shared,
        tx: Some(tx),
        auth: cfg
            .basic_auth
            .as_ref()
            .map(|a| Expected::new(&a.login, &a.password.0)),
        cors: cfg.cors,
    });
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    info!("api", "listening on {scheme}://{}", cfg.bind);
    run(server, ctx, "api")
}

/// Start the `[metrics]` listener (`/metrics` only, no auth, as gobetween).
pub fn spawn_metrics(bind: SocketAddr, shared: Arc<Shared>) -> io::Result<()> {
    let server = behind_front(front::start(bind, "metrics", Upgrade::Plain)?)?;
    info!("metrics", "listening on http://{bind}/metrics");
    let ctx = Arc::new(Ctx {
        shared,
        tx: None,
        auth: None,
        cors: false,
    });
    run(server, ctx, "metrics")
}

/// tiny_http on a private unix socket behind the front ([`front`]): plain
/// HTTP on `bind`, or HTTPS with `[api.tls]` ([`super::tls`]).
#[cfg(feature = "tls")]
fn listen(cfg: &Api) -> io::Result<Server> {
    behind_front(match &cfg.tls {
        Some(pair) => super::tls::front(cfg.bind, pair)?,
        None => front::start(cfg.bind, "api", Upgrade::Plain)?,
    })
}

#[cfg(not(feature = "tls"))]
fn listen(cfg: &Api) -> io::Result<Server> {
    if cfg.tls.is_some() {
        return Err(io::Error::other(
            "[api.tls] needs the \"tls\" feature, which this build does not have",
        ));
    }
    behind_front(front::start(cfg.bind, "api", Upgrade::Plain)?)
}

fn behind_front(unix: std::os::unix::net::UnixListener) -> io::Result<Server> {
    Server::from_listener(unix, None).map_err(io::Error::other)
}

fn run(server: Server, ctx: Arc<Ctx>, name: &str) -> io::Result<()> {
    let name = name.to_string();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || serve(&server, &ctx, &name))?;
    Ok(())
}

/// Take requests and answer each on its own thread, at most
/// [`MAX_REQUESTS`] at once.
fn serve(server: &Server, ctx: &Arc<Ctx>, name: &str) {
    let slots = Arc::new(Semaphore::new(MAX_REQUESTS));
    while let Ok(req) = server.recv() {
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            let busy = format!("{MAX_REQUESTS} requests in flight");
            let resp = add(
                respond(Answer::Json(503, serde_json::json!({ "error": busy }))),
                "Connection",
                "close",
            );
            let _ = req.respond(with_cors(resp, ctx.cors));
            continue;
        };
        let ctx = Arc::clone(ctx);
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _slot = slot;
                handle(req, &ctx);
            });
        if let Err(e) = spawned {
            warn!(name, "cannot start a request thread: {e}");
        }
    }
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn handle(mut req: Request, ctx: &Ctx) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let answer = if ctx.tx.is_none() {
        metrics_only(&method, path, ctx)
    } else if ctx.cors && method == Method::Options {
        Answer::Text(204, "text/plain", String::new())
    } else if path != "/ping"
        && let Some(expected) = &ctx.auth
        && !expected.check(header(&req, "Authorization"))
    {
        let resp = add(
            text(401, "text/plain; charset=utf-8", "401 Unauthorized".into()),
            "WWW-Authenticate",
            "Basic realm=\"Authorization Required\"",
        );
        let _ = req.respond(with_cors(resp, ctx.cors));
        return;
    } else {
        match read_body(&mut req) {
            Ok(body) => {
                let tx = ctx.tx.as_ref();
                handlers::route(&method, path, query, &body, &ctx.shared, tx)
            }
            Err(answer) => {
                let resp = add(respond(answer), "Connection", "close");
                let _ = req.respond(with_cors(resp, ctx.cors));
                return;
            }
        }
    };
    if let Answer::Json(status, _) = &answer
        && *status >= 400
        && method != Method::Get
    {
        warn!("api", "{method} {path}: {status}");
    }
    let _ = req.respond(with_cors(respond(answer), ctx.cors));
}

fn metrics_only(method: &Method, path: &str, ctx: &Ctx) -> Answer {
    match (method, path) {
        (Method::Get, "/metrics") => handlers::metrics(&ctx.shared),
        (Method::Get, "/ping") => Answer::Text(200, "text/plain; charset=utf-8", "OK".into()),
        _ => Answer::not_found(),
    }
}

/// The body, at most [`BODY_LIMIT`] bytes; 413 beyond, 400 if unreadable.
fn read_body(req: &mut Request) -> Result<Vec<u8>, Answer> {
    if req.body_length().is_some_and(|n| n > BODY_LIMIT) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    match req
        .as_reader()
        .take(BODY_LIMIT as u64 + 1)
        .read_to_end(&mut body)
    {
        Ok(n) if n > BODY_LIMIT => Err(too_large()),
        Ok(_) => Ok(body),
        Err(e) => Err(Answer::Json(
            400,
            serde_json::json!({ "error": format!("cannot read the body: {e}") }),
        )),
    }
}

fn too_large() -> Answer {
    Answer::Json(
        413,
        serde_json::json!({ "error": format!("body larger than {BODY_LIMIT} bytes") }),
    )
}

type Resp = TinyResponse<io::Cursor<Vec<u8>>>;

/// Add a header; names and values are ASCII we build, so this never drops one.
fn add(resp: Resp, name: &str, value: &str) -> Resp {
    match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        Ok(h) => resp.with_header(h),
        Err(()) => resp,
    }
}

fn text(status: u16, ctype: &str, body: String) -> Resp {
    let resp = TinyResponse::from_string(body).with_status_code(status);
    add(resp, "Content-Type", ctype)
}

fn respond(answer: Answer) -> Resp {
    match answer {
        Answer::Json(status, v) => {
            let mut body = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "null".into());
            body.push('\n');
            text(status, "application/json; charset=utf-8", body)
        }
        Answer::Text(status, ctype, body) => text(status, ctype, body),
    }
}

/// gin-contrib/cors defaults as gobetween configures them.
fn with_cors(resp: Resp, cors: bool) -> Resp {
    if !cors {
        return resp;
    }
    let headers = [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true"),
        (
            "Access-Control-Allow-Methods",
            "PUT, POST, DELETE, GET, OPTIONS",
        ),
        (
            "Access-Control-Allow-Headers",
            "Origin, Authorization, Content-Type",
        ),
        ("Access-Control-Max-Age", "43200"),
    ];
    headers.iter().fold(resp, |r, (n, v)| add(r, n, v))
}

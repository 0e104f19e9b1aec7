//! `ping`: a TCP connect, no data (gobetween's name for it).

use tokio::net::TcpStream;

use super::{Outcome, Target};

pub async fn check(target: &Target) -> Outcome {
    let addr = match target.resolve().await {
        Ok(a) => a,
        Err(o) => return o,
    };
    match TcpStream::connect(addr).await {
        Ok(_) => Outcome::pass(format!("connected to {addr}")),
        Err(e) => Outcome::from_io(&format!("connect {addr}"), &e),
    }
}

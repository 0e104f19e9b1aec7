//! A test PKI made with the `openssl` tool: a CA, a server certificate for
//! IP 127.0.0.1, a client certificate, and a client certificate from a
//! second ("rogue") CA that the server does not trust. All keys are P-256,
//! PEM, unencrypted.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

/// Run openssl in `dir`; `Err` with its stderr when it is missing or fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `openssl req` with a new P-256 key `NAME.key` for subject CN=NAME,
/// writing `out`; `extra` adds arguments.
fn req(dir: &Path, name: &str, out: &str, extra: &[&str]) -> Result<(), String> {
    let (key, subject) = (format!("{name}.key"), format!("/CN={name}"));
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let args = [
        &["req"][..],
        &new_key,
        &["-keyout", &key, "-out", out, "-subj", &subject],
        extra,
    ]
    .concat();
    openssl(dir, &args)
}

/// A self-signed CA `name` (`name`.pem, `name`.key).
fn ca(dir: &Path, name: &str) -> Result<(), String> {
    let ca_ext = [
        "-x509",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    req(dir, name, &format!("{name}.pem"), &ca_ext)
}

/// A leaf `name` signed by CA `by` with extensions `ext` (one per line).
fn leaf(dir: &Path, name: &str, by: &str, serial: &str, ext: &str) -> Result<(), String> {
    std::fs::write(dir.join(format!("{name}.ext")), ext).map_err(|e| e.to_string())?;
    req(dir, name, &format!("{name}.csr"), &[])?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{by}.pem"),
            "-CAkey",
            &format!("{by}.key"),
            "-set_serial",
            serial,
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    )
}

impl Pki {
    /// Make the files in `dir`; `Err` with the reason when openssl is
    /// missing or fails (callers skip).
    pub fn make(dir: &Path) -> Result<Pki, String> {
        ca(dir, "ca")?;
        ca(dir, "rogue-ca")?;
        let server = "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n\
                      extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n";
        let client = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n\
                      keyUsage=digitalSignature\n";
        leaf(dir, "server", "ca", "11", server)?;
        leaf(dir, "client", "ca", "12", client)?;
        leaf(dir, "rogue", "rogue-ca", "13", client)?;
        let p = |f: &str| dir.join(f);
        Ok(Pki {
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            rogue_cert: p("rogue.pem"),
            rogue_key: p("rogue.key"),
        })
    }
}

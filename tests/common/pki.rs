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

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
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

fn ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

/// A leaf `name` signed by CA `by` with extensions `ext` (one per line).
fn leaf(dir: &Path, name: &str, by: &str, serial: &str, ext: &str) -> Result<(), String> {
    std::fs::write(dir.join(format!("{name}.ext")), ext).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
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

//! `docker` discovery against a real Docker engine (Debian's docker.io):
//! a private dockerd (own data root, exec root, socket, DOCKER_CONFIG, and
//! its own bridge `btwx-dkN` in 198.18.0.0/15; no iptables), containers
//! from a `docker import`ed busybox-static root filesystem, ports published
//! on 127.0.0.1. One test also serves the API on tcp://127.0.0.1:PORT with
//! `--tlsverify` and an openssl-made CA/server/client set.
//!
//! Skips with a printed reason when not root, a tool is missing, or the
//! environment cannot run containers: dockerd is started (bounded) with the
//! default storage driver, then with `vfs`, and each start must pass a probe
//! (`docker run` of the test image with a published port) before betwixt is
//! involved, so a skip never hides a betwixt failure. Everything is undone
//! on drop, also on panic: containers removed, dockerd stopped (its process
//! group killed if it does not stop), leftover mounts detached, the data
//! root removed and the bridge deleted.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use common::discovery::{
    Bridge, certificates_or_skip, containers_serve, detach_mounts_under, discovery_config,
    kill_group_after, last_lines, root_with_tools, run_bounded, spawn_in_group,
};
use common::*;
use pki::Pki;

const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const BUSYBOX: &str = "/bin/busybox";
const IMAGE: &str = "betwixt-bb:test";
/// How long one dockerd start may take before the attempt is given up.
const START: Duration = Duration::from_secs(30);

/// One private dockerd at a time: two would only compete for 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The API on TCP with client certificates required.
struct TlsApi<'a> {
    port: u16,
    pki: &'a Pki,
}

struct Dockerd {
    child: Option<Child>,
    sock: PathBuf,
    driver: &'static str,
    _bridge: Bridge,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// A running dockerd that can run containers, or `None` (reason printed).
    fn start(n: u8, tls: Option<TlsApi>) -> Option<Self> {
        let tools = [DOCKERD, DOCKER, BUSYBOX, "/usr/bin/timeout"];
        if !root_with_tools("docker discovery test", &tools, "docker.io busybox-static") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let bridge = match Bridge::create(&format!("btwx-dk{n}"), &format!("198.19.{n}.1/24")) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("SKIP: cannot make a bridge for dockerd: {e}");
                return None;
            }
        };
        let mut d = Dockerd {
            child: None,
            sock: dir.path().join("docker.sock"),
            driver: "",
            _bridge: bridge,
            dir,
        };
        let mut reasons = Vec::new();
        for driver in ["", "vfs"] {
            match d.attempt(driver, tls.as_ref()) {
                Ok(()) => return Some(d),
                Err(e) => {
                    let shown = if driver.is_empty() { "default" } else { driver };
                    reasons.push(format!("storage driver {shown}: {e}"));
                    d.stop();
                }
            }
        }
        eprintln!(
            "SKIP: this environment cannot run docker containers:\n{}",
            reasons.join("\n")
        );
        None
    }

    /// Start dockerd with `driver` ("" = its own choice), wait (bounded)
    /// until it answers, and probe that a container can run.
    fn attempt(&mut self, driver: &'static str, tls: Option<&TlsApi>) -> Result<(), String> {
        let p = self.dir.path().to_path_buf();
        let tag = if driver.is_empty() { "default" } else { driver };
        let _ = std::fs::remove_file(&self.sock);
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--data-root")
            .arg(p.join(format!("root-{tag}")))
            .arg("--exec-root")
            .arg(p.join(format!("exec-{tag}")))
            .arg("--pidfile")
            .arg(p.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(["--bridge", &self._bridge.0])
            .args(["--iptables=false", "--ip6tables=false"]);
        if !driver.is_empty() {
            cmd.args(["--storage-driver", driver]);
        }
        if let Some(t) = tls {
            cmd.arg("-H")
                .arg(format!("tcp://127.0.0.1:{}", t.port))
                .arg("--tlsverify")
                .arg("--tlscacert")
                .arg(&t.pki.ca)
                .arg("--tlscert")
                .arg(&t.pki.server_cert)
                .arg("--tlskey")
                .arg(&t.pki.server_key);
        }
        let child = spawn_in_group(&mut cmd, &p.join(format!("dockerd-{tag}.log")))
            .map_err(|e| format!("spawn dockerd: {e}"))?;
        self.child = Some(child);
        self.driver = driver;
        let mut exited = false;
        let up = wait_until(START, || {
            exited = matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
            exited || self.docker(&["version"]).is_ok()
        });
        if exited || !up {
            let why = if exited { "exited" } else { "did not answer" };
            return Err(format!("dockerd {why} within {START:?}:\n{}", self.log()));
        }
        self.import_busybox()?;
        let probe = [
            "run",
            "--rm",
            "-p",
            "127.0.0.1::80",
            IMAGE,
            "/bin/busybox",
            "true",
        ];
        self.docker(&probe)
            .map(drop)
            .map_err(|e| format!("a container cannot run: {e}\n{}", self.log()))
    }

    fn log(&self) -> String {
        let tag = if self.driver.is_empty() {
            "default"
        } else {
            self.driver
        };
        let text = std::fs::read_to_string(self.dir.path().join(format!("dockerd-{tag}.log")))
            .unwrap_or_default();
        last_lines(&text, 30)
    }

    /// The docker CLI on our socket, bounded to 60 s.
    fn docker(&self, args: &[&str]) -> Result<String, String> {
        let host = format!("unix://{}", self.sock.display());
        let cli = self.dir.path().join("cli");
        let envs = [
            ("DOCKER_HOST", OsStr::new(&host)),
            ("DOCKER_CONFIG", cli.as_os_str()),
        ];
        run_bounded(DOCKER, args, &envs)
    }

    /// Import a busybox-static root filesystem as [`IMAGE`].
    fn import_busybox(&self) -> Result<(), String> {
        let root = self.dir.path().join("rootfs");
        let tar = self.dir.path().join("rootfs.tar");
        if !tar.exists() {
            std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
            std::fs::copy(BUSYBOX, root.join("bin/busybox")).map_err(|e| e.to_string())?;
            let ok = Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("tar of the busybox rootfs failed".into());
            }
        }
        self.docker(&["import", tar.to_str().unwrap_or_default(), IMAGE])
            .map(drop)
    }

    /// A container greeting each connection on port 80 with its name.
    fn run(&self, name: &str, label: &str, publish: bool) {
        let script = format!("while true; do echo {name} | /bin/busybox nc -l -p 80; done");
        let mut args = vec!["run", "-d", "--name", name, "--label", label];
        let sni = format!("sni={name}.test");
        args.extend(["--label", &sni]);
        if publish {
            args.extend(["-p", "127.0.0.1::80"]);
        }
        args.extend([IMAGE, "/bin/busybox", "sh", "-c", &script]);
        self.docker(&args)
            .unwrap_or_else(|e| panic!("docker run {name}: {e}"));
    }

    /// Stop dockerd (SIGTERM, then SIGKILL to its process group) and
    /// detach whatever it left mounted under our directory.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            kill_group_after(&mut child, Duration::from_secs(15));
        }
        detach_mounts_under(self.dir.path());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Ok(ids) = self.docker(&["ps", "-aq"])
            && !ids.is_empty()
        {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.lines());
            let _ = self.docker(&args);
        }
        self.stop();
        // Then the fields: the bridge is deleted and the directory removed.
    }
}

/// betwixt on `d` with the docker discovery keys `discovery`, once it
/// serves the container `first`.
fn betwixt_serving(d: &Dockerd, discovery: &str, first: &str) -> (u16, Betwixt) {
    let port = free_port();
    let bx = Betwixt::start_quiet(&config(port, discovery), &[port]);
    let up = containers_serve(port, &[first]);
    assert!(up, "{}\n{}", bx.logs(), d.log());
    (port, bx)
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`discovery_config`] of kind docker, for the containers' port 80.
fn config(port: u16, discovery: &str) -> String {
    discovery_config(
        port,
        &format!(
            "kind = \"docker\"\ndocker_container_private_port = 80\ninterval = \"200ms\"\n{discovery}"
        ),
    )
}

#[test]
fn docker_containers_come_and_go() {
    let _one = lock();
    let Some(d) = Dockerd::start(7, None) else {
        return;
    };
    d.run("c1", "lb=web", true);
    d.run("c2", "lb=web", false);
    d.run("c3", "lb=other", true);
    let disc = format!(
        "docker_endpoint = \"unix://{}\"\ndocker_container_label = \"lb=web\"\n",
        d.sock.display()
    );
    let (port, bx) = betwixt_serving(&d, &disc, "c1");
    assert!(
        bx.logs()
            .contains("container c2 publishes no host port for private port 80"),
        "{}",
        bx.logs()
    );
    d.run("c4", "lb=web", true);
    assert!(containers_serve(port, &["c1", "c4"]), "{}", bx.logs());
    d.docker(&["rm", "-f", "c1"]).expect("rm c1");
    assert!(containers_serve(port, &["c4"]), "{}", bx.logs());
}

#[test]
fn docker_over_tls_with_client_certificates() {
    let _one = lock();
    let Some((certs, pki)) = certificates_or_skip(Pki::make) else {
        return;
    };
    let api = free_port();
    let tls = TlsApi {
        port: api,
        pki: &pki,
    };
    let Some(d) = Dockerd::start(8, Some(tls)) else {
        return;
    };
    d.run("t1", "lb=tls", true);
    // betwixt reads its client certificate files at each fetch: copies it
    // can be given a wrong certificate through.
    let (cert, key) = (certs.path().join("bx.pem"), certs.path().join("bx.key"));
    let use_pair = |c: &Path, k: &Path| {
        std::fs::copy(c, &cert).unwrap();
        std::fs::copy(k, &key).unwrap();
    };
    use_pair(&pki.client_cert, &pki.client_key);
    let disc = format!(
        "docker_endpoint = \"tcp://127.0.0.1:{api}\"\ndocker_tls_enabled = true\n\
         docker_tls_cert_path = \"{}\"\ndocker_tls_key_path = \"{}\"\n\
         docker_tls_cacert_path = \"{}\"\nfailpolicy = \"keeplast\"\n",
        cert.display(),
        key.display(),
        pki.ca.display()
    );
    let (port, bx) = betwixt_serving(&d, &disc, "t1");

    // A client certificate from a CA dockerd does not trust: each fetch
    // fails (logged), and keeplast keeps the list.
    use_pair(&pki.rogue_cert, &pki.rogue_key);
    let failed = wait_until(Duration::from_secs(10), || {
        bx.logs()
            .contains("discovery failed: GET https://127.0.0.1")
    });
    assert!(failed, "{}", bx.logs());
    assert!(
        bx.logs().contains("keeping the last 1 backends"),
        "{}",
        bx.logs()
    );
    d.run("t2", "lb=tls", true);
    let fails = |bx: &Betwixt| bx.logs().matches("discovery failed").count();
    let n = fails(&bx);
    assert!(wait_until(Duration::from_secs(10), || fails(&bx) >= n + 3));
    // (busybox nc between two connections does not answer: "" is no error.)
    let seen: Vec<String> = (0..8).map(|_| who(port)).collect();
    assert!(seen.iter().all(|s| s != "t2"), "{seen:?}\n{}", bx.logs());
    assert!(containers_serve(port, &["t1"]), "{}", bx.logs());

    // The right certificate again: the next fetch sees t2.
    use_pair(&pki.client_cert, &pki.client_key);
    assert!(containers_serve(port, &["t1", "t2"]), "{}", bx.logs());
}

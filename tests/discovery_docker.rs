//! `docker` discovery against a real Docker engine (Debian's docker.io):
//! a private dockerd (own data root, exec root and socket, bridge in
//! 198.18.0.0/15, no iptables), containers from a `docker import`ed
//! busybox-static root filesystem, ports published on 127.0.0.1. Skips
//! with a printed reason when not root or the engine cannot start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const DOCKER: &str = "/usr/bin/docker";
const BUSYBOX: &str = "/bin/busybox";

struct Dockerd {
    child: Child,
    sock: PathBuf,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Option<Self> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: docker discovery test needs root");
            return None;
        }
        for tool in ["/usr/sbin/dockerd", DOCKER, BUSYBOX] {
            if !Path::new(tool).exists() {
                eprintln!("SKIP: {tool} missing (apt-get install docker.io busybox-static)");
                return None;
            }
        }
        let dir = tempfile::tempdir().ok()?;
        let sock = dir.path().join("docker.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).ok()?;
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--bip",
                "198.18.7.1/24",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        let d = Self { child, sock, dir };
        if !wait_until(Duration::from_secs(30), || d.docker(&["version"]).is_ok()) {
            eprintln!("SKIP: dockerd did not start:\n{}", d.log());
            return None;
        }
        Some(d)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(DOCKER)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Import a busybox-static root filesystem as `betwixt-bb:test`.
    fn import_busybox(&self) {
        let root = self.dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        let tar = self.dir.path().join("rootfs.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar");
        self.docker(&["import", tar.to_str().unwrap(), "betwixt-bb:test"])
            .expect("docker import");
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
        args.extend(["betwixt-bb:test", "/bin/busybox", "sh", "-c", &script]);
        self.docker(&args)
            .unwrap_or_else(|e| panic!("docker run {name}: {e}"));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            for id in ids.lines() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_until(Duration::from_secs(15), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serves(port: u16, names: &[&str]) -> bool {
    wait_until(Duration::from_secs(20), || {
        let mut seen: Vec<String> = (0..names.len() * 4).map(|_| who(port)).collect();
        seen.sort();
        seen.dedup();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        seen == want
    })
}

#[test]
fn docker_containers_come_and_go() {
    let Some(d) = Dockerd::start() else {
        return;
    };
    d.import_busybox();
    d.run("c1", "lb=web", true);
    d.run("c2", "lb=web", false);
    d.run("c3", "lb=other", true);
    let port = free_port();
    let cfg = format!(
        "[logging]\nlevel = \"debug\"\n\n[servers.test]\nbind = \"127.0.0.1:{port}\"\n\
         balance = \"roundrobin\"\n\n[servers.test.discovery]\nkind = \"docker\"\n\
         docker_endpoint = \"unix://{}\"\ndocker_container_label = \"lb=web\"\n\
         docker_container_private_port = 80\ninterval = \"200ms\"\n",
        d.sock.display()
    );
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    assert!(serves(port, &["c1"]), "{}\n{}", bx.logs(), d.log());
    assert!(
        bx.logs()
            .contains("container c2 publishes no host port for private port 80"),
        "{}",
        bx.logs()
    );
    d.run("c4", "lb=web", true);
    assert!(serves(port, &["c1", "c4"]), "{}", bx.logs());
    d.docker(&["rm", "-f", "c1"]).expect("rm c1");
    assert!(serves(port, &["c4"]), "{}", bx.logs());
}

//! `lxd` discovery against a real LXD daemon (Debian's lxd package): a
//! private daemon (own LXD_DIR and LXD_CONF), a `dir` storage pool, its own
//! bridge `btwxlxd0` at 198.19.30.1/24 (no NAT, no IPv6), and containers
//! from an imported busybox-static image whose init sets the address given
//! in its environment and greets each connection on port 80 with its name.
//!
//! Skips with a printed reason when not root, a tool is missing, or the
//! environment cannot run the daemon or a container: a container must
//! answer on its address before betwixt is started, so a skip never hides a
//! betwixt failure. Everything is undone on drop, also on panic.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const LXD: &str = "/usr/bin/lxd";
const LXC: &str = "/usr/bin/lxc";
const BUSYBOX: &str = "/bin/busybox";
const BRIDGE: &str = "btwxlxd0";
const START: Duration = Duration::from_secs(30);

const INIT: &str = "#!/bin/busybox sh\n/bin/busybox ip addr add $ADDR dev eth0\n\
                    /bin/busybox ip link set eth0 up\n\
                    while true; do echo $NAME | /bin/busybox nc -l -p 80; done\n";

struct Lxd {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Lxd {
    fn start() -> Option<Lxd> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: real lxd test needs root");
            return None;
        }
        for tool in [LXD, LXC, BUSYBOX, "/usr/bin/timeout"] {
            if !Path::new(tool).exists() {
                eprintln!("SKIP: {tool} missing (apt-get install lxd busybox-static)");
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("lxd.out")).expect("log");
        let child = Command::new(LXD)
            .args(["--group", "root", "--logfile"])
            .arg(dir.path().join("lxd.log"))
            .env("LXD_DIR", dir.path().join("d"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn();
        let mut l = Lxd { child: None, dir };
        match child {
            Ok(c) => l.child = Some(c),
            Err(e) => {
                eprintln!("SKIP: cannot start lxd: {e}");
                return None;
            }
        }
        if let Err(e) = l.setup() {
            eprintln!(
                "SKIP: this environment cannot run LXD containers: {e}\n{}",
                l.log()
            );
            return None;
        }
        Some(l)
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("d/unix.socket")
    }

    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let text = read("lxd.out") + &read("lxd.log");
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The lxc CLI on our daemon, bounded to 60 s.
    fn lxc(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("/usr/bin/timeout")
            .args(["-s", "KILL", "60", LXC])
            .args(args)
            .env("LXD_DIR", self.dir.path().join("d"))
            .env("LXD_CONF", self.dir.path().join("conf"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "lxc {}: {} {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Wait for the daemon, then pool, bridge, image, and a probe container.
    fn setup(&mut self) -> Result<(), String> {
        let mut exited = false;
        let up = wait_until(START, || {
            exited = matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
            exited || self.lxc(&["info"]).is_ok()
        });
        if exited || !up {
            return Err(format!("lxd did not answer within {START:?}"));
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output(); // leftover
        self.lxc(&["storage", "create", "p", "dir"])?;
        let net = [
            "ipv4.address=198.19.30.1/24",
            "ipv4.nat=false",
            "ipv6.address=none",
        ];
        self.lxc(&["network", "create", BRIDGE, net[0], net[1], net[2]])?;
        self.lxc(&[
            "profile", "device", "add", "default", "root", "disk", "path=/", "pool=p",
        ])?;
        let nic = format!("network={BRIDGE}");
        self.lxc(&[
            "profile",
            "device",
            "add",
            "default",
            "eth0",
            "nic",
            &nic,
            "name=eth0",
        ])?;
        self.import_image()?;
        self.run("probe", "none", 9)?;
        let answered = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect_timeout(&"198.19.30.9:80".parse().unwrap(), START).is_ok()
        });
        if !answered {
            return Err("the probe container does not answer on 198.19.30.9:80".into());
        }
        self.lxc(&["delete", "-f", "probe"]).map(drop)
    }

    /// Build the image from busybox (a failure here is the test's own:
    /// panic), then import it (a failure there is the environment's).
    fn import_image(&self) -> Result<(), String> {
        let img = self.dir.path().join("img");
        let root = img.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        std::fs::write(root.join("sbin/init"), INIT).unwrap();
        let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(root.join("sbin/init"), exec).unwrap();
        std::fs::write(
            img.join("metadata.yaml"),
            "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n",
        )
        .unwrap();
        let tar = |args: &[&str]| {
            let ok = Command::new("tar")
                .current_dir(&img)
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "tar {args:?}");
        };
        tar(&["-cf", "meta.tar", "metadata.yaml"]);
        tar(&["-cf", "rootfs.tar", "-C", "rootfs", "."]);
        let (meta, rootfs) = (img.join("meta.tar"), img.join("rootfs.tar"));
        let (meta, rootfs) = (meta.to_string_lossy(), rootfs.to_string_lossy());
        self.lxc(&["image", "import", &meta, &rootfs, "--alias", "bb"])
            .map(drop)
    }

    /// A container `name` labelled `user.lb=LB` at 198.19.30.HOST.
    fn run(&self, name: &str, lb: &str, host: u8) -> Result<(), String> {
        let (label, addr, env_name) = (
            format!("user.lb={lb}"),
            format!("environment.ADDR=198.19.30.{host}/24"),
            format!("environment.NAME={name}"),
        );
        self.lxc(&[
            "init", "bb", name, "-c", &label, "-c", &addr, "-c", &env_name,
        ])?;
        self.lxc(&["start", name]).map(drop)
    }
}

impl Drop for Lxd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(names) = self.lxc(&["list", "--format", "csv", "-c", "n"]) {
                for n in names.lines() {
                    let _ = self.lxc(&["delete", "-f", n]);
                }
            }
            let _ = self.lxc(&["profile", "device", "remove", "default", "eth0"]);
            let _ = self.lxc(&["network", "delete", BRIDGE]);
            let pid = child.id() as i32;
            let _ = Command::new("/usr/bin/timeout")
                .args(["-s", "KILL", "30", LXD, "shutdown"])
                .env("LXD_DIR", self.dir.path().join("d"))
                .output();
            let stopped = wait_until(Duration::from_secs(15), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            if !stopped {
                let _ = child.wait();
            }
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        detach_mounts_under(self.dir.path());
    }
}

/// Lazily unmount every mount point below `dir` (deepest first).
fn detach_mounts_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn serves(port: u16, names: &[&str]) -> bool {
    wait_until(Duration::from_secs(20), || {
        let mut seen: Vec<String> = (0..names.len() * 4).map(|_| who(port)).collect();
        // The containers serve one connection at a time (a `nc -l` loop):
        // a connection that lands between two `nc`s gets nothing; skip it.
        seen.retain(|s| !s.is_empty());
        seen.sort();
        seen.dedup();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        seen == want
    })
}

#[test]
fn real_lxd_labelled_containers_come_and_go() {
    let Some(l) = Lxd::start() else {
        return;
    };
    l.run("c1", "web", 11).expect("c1");
    l.run("c2", "other", 12).expect("c2");
    let port = free_port();
    let cfg = format!(
        "[logging]\nlevel = \"debug\"\n\n[servers.test]\nbind = \"127.0.0.1:{port}\"\n\
         balance = \"roundrobin\"\n\n[servers.test.discovery]\nkind = \"lxd\"\n\
         lxd_server_address = \"unix:{}\"\nlxd_container_label_key = \"user.lb\"\n\
         lxd_container_label_value = \"web\"\nlxd_container_port = 80\n\
         lxd_container_interface = \"eth0\"\ninterval = \"200ms\"\n",
        l.sock().display()
    );
    let bx = Betwixt::start_quiet(&cfg, &[port]);
    assert!(serves(port, &["c1"]), "{}\n{}", bx.logs(), l.log());
    l.run("c3", "web", 13).expect("c3");
    assert!(serves(port, &["c1", "c3"]), "{}", bx.logs());
    l.lxc(&["stop", "-f", "c1"]).expect("stop c1");
    assert!(serves(port, &["c3"]), "{}", bx.logs());
}

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
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::discovery::{
    containers_serve, detach_mounts_under, discovery_config, kill_group_after, last_lines,
    root_with_tools, run_bounded,
};
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
        let tools = [LXD, LXC, BUSYBOX, "/usr/bin/timeout"];
        if !root_with_tools("real lxd test", &tools, "lxd busybox-static") {
            return None;
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
        last_lines(&(read("lxd.out") + &read("lxd.log")), 30)
    }

    /// The lxc CLI on our daemon, bounded to 60 s.
    fn lxc(&self, args: &[&str]) -> Result<String, String> {
        let (dir, conf) = (self.dir.path().join("d"), self.dir.path().join("conf"));
        let envs = [("LXD_DIR", dir.as_os_str()), ("LXD_CONF", conf.as_os_str())];
        run_bounded(LXC, args, &envs)
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
            let _ = Command::new("/usr/bin/timeout")
                .args(["-s", "KILL", "30", LXD, "shutdown"])
                .env("LXD_DIR", self.dir.path().join("d"))
                .output();
            kill_group_after(&mut child, Duration::from_secs(15));
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        detach_mounts_under(self.dir.path());
    }
}

#[test]
fn real_lxd_labelled_containers_come_and_go() {
    let Some(l) = Lxd::start() else {
        return;
    };
    l.run("c1", "web", 11).expect("c1");
    l.run("c2", "other", 12).expect("c2");
    let port = free_port();
    let disc = format!(
        "kind = \"lxd\"\nlxd_server_address = \"unix:{}\"\nlxd_container_label_key = \"user.lb\"\n\
         lxd_container_label_value = \"web\"\nlxd_container_port = 80\n\
         lxd_container_interface = \"eth0\"\ninterval = \"200ms\"\n",
        l.sock().display()
    );
    let bx = Betwixt::start_quiet(&discovery_config(port, &disc), &[port]);
    assert!(
        containers_serve(port, &["c1"]),
        "{}\n{}",
        bx.logs(),
        l.log()
    );
    l.run("c3", "web", 13).expect("c3");
    assert!(containers_serve(port, &["c1", "c3"]), "{}", bx.logs());
    l.lxc(&["stop", "-f", "c1"]).expect("stop c1");
    assert!(containers_serve(port, &["c3"]), "{}", bx.logs());
}

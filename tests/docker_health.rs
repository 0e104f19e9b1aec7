//! Docker `HEALTHCHECK` with `betwixt check`, in a real Docker engine.
//!
//! Builds a static betwixt (static glibc: `+crt-static` for the gnu target,
//! since no musl target is at hand), starts a private dockerd (own data and
//! exec roots and socket, its own bridge `btwx-dh` in 198.18.0.0/15 as
//! tests/discovery_docker.rs does, never docker0; overlay, else vfs), builds a `FROM scratch`
//! image holding only that binary and a config, and runs it with the host
//! network: the daemon in the container proxies to a backend this test owns
//! and serves `/health`; the image's HEALTHCHECK runs `/betwixt check
//! http://127.0.0.1:PORT/health`. Docker must say `healthy`, then
//! `unhealthy` once the test stops the backend. Skips with a printed reason
//! when not root or no engine can start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::discovery::{Bridge, detach_mounts_under, spawn_in_group};
use common::*;

/// The docker part (engine start to `unhealthy`) must fit in this.
const LIMIT: Duration = Duration::from_secs(90);

fn skip(why: &str) {
    eprintln!("SKIP docker_health: {why}");
}

fn found(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// `betwixt` linked statically (static glibc) into `target/static`, or why not.
fn static_betwixt() -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join("target").join("static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "--locked", "--bin", "betwixt"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .arg("--manifest-path")
        .arg(repo.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // No debug info: a faster build and a small image layer.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the static build took over 15 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!("static build failed: {tail:?}"));
    }
    let bin = dir.join("x86_64-unknown-linux-gnu/debug/betwixt");
    let elf = std::fs::read(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    if has_interpreter(&elf) {
        return Err(format!("{} is dynamically linked", bin.display()));
    }
    Ok(bin)
}

/// Whether a 64-bit little-endian ELF file has a PT_INTERP header (dynamic).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let phoff = elf.get(32..40).map_or(0, |b| {
        u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize
    });
    let (size, count) = (u16_at(54), u16_at(56));
    (0..count).any(|i| u32_at(phoff + i * size) == 3)
}

/// A private dockerd; stopped, its mounts detached and its files removed
/// on drop (then the bridge is deleted).
struct Engine {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
    _bridge: Bridge,
}

impl Engine {
    /// Start with `driver` ("" = dockerd's choice) and wait (30 s) until it answers.
    fn start(driver: &str) -> Result<Self, String> {
        let bridge = Bridge::create("btwx-dh", "198.19.251.1/24")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        let host = format!("unix://{}", d.join("d.sock").display());
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["-H", &host, "--bridge", &bridge.0])
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"]);
        if !driver.is_empty() {
            cmd.args(["--storage-driver", driver]);
        }
        let child = spawn_in_group(&mut cmd, &d.join("dockerd.log"))
            .map_err(|e| format!("dockerd: {e}"))?;
        let mut engine = Self {
            child,
            dir,
            host,
            _bridge: bridge,
        };
        let up = wait_until(Duration::from_secs(30), || {
            matches!(engine.child.try_wait(), Ok(Some(_))) || engine.docker(&["info"]).is_ok()
        });
        if !up || engine.docker(&["info"]).is_err() {
            let log =
                std::fs::read_to_string(engine.dir.path().join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            return Err(format!("dockerd did not start: {tail:?}"));
        }
        Ok(engine)
    }

    /// Build the image from `ctx` and start the container.
    fn build_and_run(&self, ctx: &Path) -> Result<(), String> {
        let ctx = ctx.to_string_lossy();
        self.docker(&["build", "-q", "-t", "betwixt-health-test", &ctx])?;
        self.docker(&[
            "run",
            "-d",
            "--name",
            "bx-health",
            "--network",
            "host",
            "betwixt-health-test",
        ])
        .map(drop)
    }

    /// The container's output (betwixt logs to stderr).
    fn logs(&self) -> String {
        Command::new("docker")
            .args(["logs", "bx-health"])
            .env("DOCKER_HOST", &self.host)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    }

    /// Run the docker client on this engine; stdout, or stderr as the error.
    fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "bx-health"]);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let gone = wait_until(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Whatever dockerd left mounted under our directory.
        detach_mounts_under(self.dir.path());
    }
}

fn image_context(dir: &Path, bin: &Path, api: u16, port: u16, backend: &str) {
    std::fs::copy(bin, dir.join("betwixt")).unwrap();
    let config = format!(
        "[logging]\noutput = \"stderr\"\n\n[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\n\
         [servers.web]\nbind = \"127.0.0.1:{port}\"\n[servers.web.discovery]\nkind = \"static\"\n\
         static_list = [\"{backend}\"]\n[servers.web.healthcheck]\nkind = \"ping\"\n\
         interval = \"500ms\"\ntimeout = \"400ms\"\n"
    );
    std::fs::write(dir.join("betwixt.toml"), config).unwrap();
    let dockerfile = format!(
        "FROM scratch\nCOPY betwixt /betwixt\nCOPY betwixt.toml /etc/betwixt/betwixt.toml\n\
         HEALTHCHECK --interval=1s --timeout=1s --retries=1 \
         CMD [\"/betwixt\", \"check\", \"http://127.0.0.1:{api}/health\"]\n\
         ENTRYPOINT [\"/betwixt\"]\nCMD [\"-c\", \"/etc/betwixt/betwixt.toml\"]\n"
    );
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
}

/// Wait until Docker reports `want` for the running container.
fn wait_health(engine: &Engine, want: &str, deadline: Instant) -> Result<(), String> {
    let mut last = String::new();
    while Instant::now() < deadline {
        let state = engine.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Health.Status}}",
            "bx-health",
        ])?;
        let (running, health) = state.split_once(' ').unwrap_or((&state, ""));
        if running != "true" {
            return Err(format!("the container stopped: {}", engine.logs()));
        }
        last = health.to_string();
        if last == want {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = engine
        .docker(&["inspect", "-f", "{{json .State.Health}}", "bx-health"])
        .unwrap_or_default();
    Err(format!(
        "health is {last:?}, not {want:?}\nhealth: {log}\nlogs: {}",
        engine.logs()
    ))
}

#[test]
fn docker_reports_healthy_then_unhealthy() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("dockerd needs root");
    }
    if !found("dockerd") || !found("docker") {
        return skip("dockerd or docker not installed (apt-get install docker.io)");
    }
    let bin = match static_betwixt() {
        Ok(b) => b,
        Err(e) => return skip(&e),
    };
    let backend = Backend::start("one");
    let (api, port) = (free_port(), free_port());
    let ctx = tempfile::tempdir().unwrap();
    image_context(ctx.path(), &bin, api, port, &backend.line());
    // The default storage driver, then vfs (works where overlay cannot).
    let started = Instant::now();
    let mut reasons = Vec::new();
    let mut running = None;
    for driver in ["", "vfs"] {
        match Engine::start(driver).and_then(|e| e.build_and_run(ctx.path()).map(|()| e)) {
            Ok(e) => {
                running = Some(e);
                break;
            }
            Err(e) => reasons.push(format!("storage driver {driver:?}: {e}")),
        }
    }
    let Some(engine) = running else {
        return skip(&format!("no engine can run a container: {reasons:?}"));
    };
    let deadline = started + LIMIT;
    wait_health(&engine, "healthy", deadline).unwrap();
    // The service works: traffic through the container reaches the backend.
    assert_eq!(who(port), "one");

    backend.stop_refusing();
    wait_health(&engine, "unhealthy", deadline).unwrap();
    let health = engine
        .docker(&["inspect", "-f", "{{json .State.Health}}", "bx-health"])
        .unwrap();
    assert!(
        health.contains("unhealthy: ") && health.contains("503"),
        "{health}"
    );
}

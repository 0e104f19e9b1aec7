//! Helpers for tests that need root and system tools (`ip`, `setpriv`).

use std::process::{Command, Stdio};

/// Why a root-only test must skip: not root, or `ip`/`setpriv` missing.
pub fn root_skip_reason() -> Option<String> {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("setpriv", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool}` is missing"));
        }
    }
    None
}

/// Return from the test with a printed reason unless root with the tools.
#[macro_export]
macro_rules! need_root {
    () => {
        if let Some(why) = $crate::common::root::root_skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Run a program (e.g. `ip`); panic with its stderr on failure.
#[track_caller]
pub fn run(prog: &str, args: &[&str]) {
    let out = Command::new(prog).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with `lo` up, deleted on drop (with the veth ends
/// inside it), also when the test panics. The name is unique per process
/// and call: tests of one binary run in parallel.
pub struct Netns(pub String);

impl Netns {
    pub fn new(prefix: &str, tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend(args);
        run("ip", &all);
    }

    /// The prefix that runs a program in the namespace.
    pub fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.0]
    }

    /// Run `f` on a thread that entered this namespace (its sockets live
    /// there, and so do threads it starts).
    pub fn thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("netns file");
        std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd moves only this thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// [`Self::thread`], waited for: `f`'s result (its panic goes on).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.thread(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

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

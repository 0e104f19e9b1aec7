//! `script`: a script file or inline content; exit 0 = healthy.
//!
//! `script_path` is executed directly (no shell, no arguments).
//! `script_content` is written to a file (mode 0700) in a fresh private
//! directory (mode 0700) under the temp dir and removed after the run, also
//! when the check is cut by its timeout. That file is not executed itself
//! (a `noexec` /tmp works): its `#!` line names the interpreter, which gets
//! the file as its last argument; without `#!` it runs with `/bin/sh`.
//!
//! The target is passed in the environment as `BETWIXT_HC_IP` and
//! `BETWIXT_HC_PORT` (and `NEXUS_HC_IP`/`NEXUS_HC_PORT` for scripts
//! written for that checker). stdout and stderr are captured together.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::process::{self, Invocation};
use super::{Cause, Outcome, Target};
use crate::config::Script;

pub async fn check(script: &Script, target: &Target, _timeout: Option<Duration>) -> Outcome {
    let (mut inv, _file) = match script {
        Script::Path(p) => (plain(p), None),
        Script::Content(text) => match TempScript::write(text) {
            Ok(f) => (interpreted(text, &f.path), Some(f)),
            Err(e) => {
                return Outcome::fail(Cause::Spawn, format!("cannot write the script: {e}"));
            }
        },
    };
    inv.env = env(target);
    let name = match script {
        Script::Path(p) => p.display().to_string(),
        Script::Content(_) => "script_content".into(),
    };
    match process::run(&inv).await {
        Ok(done) if done.status.success() => Outcome::pass("exit 0").with_output(done.output()),
        Ok(done) => Outcome::fail(Cause::Exit, done.status.describe()).with_output(done.output()),
        Err(e) => Outcome::fail(Cause::Spawn, format!("{name}: {e}")),
    }
}

/// The variables a script finds its target in.
pub fn env(target: &Target) -> Vec<(String, String)> {
    let (ip, port) = (target.host.clone(), target.port.to_string());
    vec![
        ("BETWIXT_HC_IP".into(), ip.clone()),
        ("BETWIXT_HC_PORT".into(), port.clone()),
        ("NEXUS_HC_IP".into(), ip),
        ("NEXUS_HC_PORT".into(), port),
    ]
}

fn plain(path: &Path) -> Invocation {
    Invocation {
        program: path.into(),
        args: Vec::new(),
        env: Vec::new(),
        merge_stderr: true,
    }
}

fn interpreted(text: &str, file: &Path) -> Invocation {
    let (program, arg) = interpreter(text);
    let mut args: Vec<OsString> = arg.into_iter().map(OsString::from).collect();
    args.push(file.into());
    Invocation {
        program: program.into(),
        args,
        env: Vec::new(),
        merge_stderr: true,
    }
}

/// The interpreter of a script and its optional single argument, as the
/// kernel reads a `#!` line; `/bin/sh` without one.
pub fn interpreter(text: &str) -> (String, Option<String>) {
    let Some(rest) = text.strip_prefix("#!") else {
        return ("/bin/sh".into(), None);
    };
    let line = rest.lines().next().unwrap_or("").trim();
    match line.split_once([' ', '\t']) {
        Some((prog, arg)) if !arg.trim().is_empty() => (prog.into(), Some(arg.trim().into())),
        _ if line.is_empty() => ("/bin/sh".into(), None),
        _ => (line.split([' ', '\t']).next().unwrap_or(line).into(), None),
    }
}

/// An inline script on disk for one run: removed with its directory on drop.
#[derive(Debug)]
pub struct TempScript {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TempScript {
    pub fn write(text: &str) -> std::io::Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let salt = crate::balance::random_u64() & 0xffff_ffff;
            let dir = base.join(format!("betwixt-hc-{}-{n}-{salt:08x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let path = dir.join("check");
                    let me = Self { dir, path };
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o700)
                        .open(&me.path)?;
                    f.write_all(text.as_bytes())?;
                    return Ok(me);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free temp name")))
    }
}

impl Drop for TempScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Verdict;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_the_interpreter_like_the_kernel() {
        assert_eq!(interpreter("echo hi"), ("/bin/sh".into(), None));
        assert_eq!(interpreter("#!/bin/bash\necho"), ("/bin/bash".into(), None));
        assert_eq!(
            interpreter("#! /usr/bin/env  python3 -u\n"),
            ("/usr/bin/env".into(), Some("python3 -u".into()))
        );
        assert_eq!(interpreter("#!"), ("/bin/sh".into(), None));
        assert_eq!(interpreter("#!/bin/sh \n"), ("/bin/sh".into(), None));
    }

    #[test]
    fn temp_script_is_private_and_removed() {
        let t = TempScript::write("exit 0").unwrap();
        let dir = t.path.parent().unwrap().to_path_buf();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&t.path)), (0o700, 0o700));
        drop(t);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn inline_content_gets_the_target_and_exit_status() {
        let t = Target::new("127.0.0.1", 5432);
        let ok = Script::Content("echo \"$BETWIXT_HC_IP:$NEXUS_HC_PORT\"; echo e >&2".into());
        let o = check(&ok, &t, None).await;
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(o.output.as_deref(), Some("127.0.0.1:5432\ne\n"));
        let bad = Script::Content("#!/bin/sh\nexit 7".into());
        let o = check(&bad, &t, None).await;
        assert_eq!(
            (o.verdict, o.cause, o.detail.as_str()),
            (Verdict::Fail, Cause::Exit, "exit 7")
        );
        let missing = Script::Path("/nonexistent/check.sh".into());
        assert_eq!(check(&missing, &t, None).await.cause, Cause::Spawn);
    }
}

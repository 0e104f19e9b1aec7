//! `exec`: run `exec_command` (an argument array, no shell) in its own
//! process group; its stdout lines are backends in the line format. A
//! non-zero exit is a fetch error. When the fetch is dropped (timeout) the
//! whole group is killed.

use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::Listing;
use super::policy::parse_lines;

/// Most stdout read from the command; more is an error.
pub const MAX_OUTPUT: u64 = 4 << 20;
/// Most stderr quoted in an error.
const MAX_STDERR: u64 = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub argv: Vec<String>,
}

/// Kills the process group on drop unless disarmed.
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) on a process group we created; no memory involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Exec {
    pub async fn fetch(&self) -> Result<Listing, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("exec_command is empty".into());
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let mut guard = GroupKill(child.id().and_then(|p| i32::try_from(p).ok()));
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let (out, err, status) = tokio::join!(
            read_capped(out, MAX_OUTPUT),
            read_capped(err, MAX_STDERR),
            child.wait()
        );
        let status = status.map_err(|e| format!("{program}: {e}"))?;
        guard.0 = None;
        let out = out.map_err(|e| format!("{program}: reading stdout: {e}"))?;
        if out.len() as u64 > MAX_OUTPUT {
            return Err(format!("{program}: more than {MAX_OUTPUT} bytes of output"));
        }
        if !status.success() {
            let err = err.unwrap_or_default();
            let err = String::from_utf8_lossy(&err);
            return Err(format!("{program} failed ({status}): {}", err.trim()));
        }
        let text = String::from_utf8(out).map_err(|_| format!("{program}: output is not UTF-8"))?;
        let (specs, warnings) = parse_lines(&text);
        Ok(Listing { specs, warnings })
    }
}

/// Read up to `cap + 1` bytes (so an overflow is visible), then drain.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>, cap: u64) -> std::io::Result<Vec<u8>> {
    let Some(mut stream) = stream else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    (&mut stream).take(cap + 1).read_to_end(&mut buf).await?;
    tokio::io::copy(&mut stream, &mut tokio::io::sink()).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(args: &[&str]) -> Exec {
        Exec {
            argv: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn lists_backends_from_stdout() {
        let l = exec(&["/bin/sh", "-c", "printf 'a:1\\nbad\\n\\nb:2 weight=3\\n'"])
            .fetch()
            .await
            .unwrap();
        let keys: Vec<String> = l.specs.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["a:1", "b:2"]);
        assert_eq!(l.specs[1].weight, 3);
        assert_eq!(l.warnings.len(), 1);
    }

    #[tokio::test]
    async fn failures_are_errors() {
        let e = exec(&["/bin/sh", "-c", "echo boom >&2; exit 3"])
            .fetch()
            .await
            .unwrap_err();
        assert!(e.contains("boom") && e.contains('3'), "{e}");
        let e = exec(&["/nonexistent/x"]).fetch().await.unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        let e = exec(&["/bin/sh", "-c", "head -c 5000000 /dev/zero"])
            .fetch()
            .await
            .unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", mark.display());
        let e = exec(&["/bin/sh", "-c", &script]);
        let r = tokio::time::timeout(std::time::Duration::from_millis(500), e.fetch()).await;
        assert!(r.is_err(), "must time out");
        let pid: i32 = std::fs::read_to_string(&mark)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            // A killed child may linger as a zombie of the reaped shell's
            // init; /proc/PID/stat state Z or absent both mean dead.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.split(' ').nth(2) == Some("Z"))
        });
        assert!(gone, "grandchild {pid} still running");
    }
}

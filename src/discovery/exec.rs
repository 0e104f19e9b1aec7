//! `exec`: run `exec_command` (an argument array, no shell) in its own
//! process group; its stdout lines are backends in the line format. A
//! non-zero exit, or output in which no line is a backend, is a fetch
//! error. When the fetch is dropped (timeout) the whole group is killed.

use super::Listing;
use super::policy::{lines_result, parse_lines};
use crate::health::process::{self, Invocation};

/// Most stdout read from the command; more is an error.
pub const MAX_OUTPUT: usize = 4 << 20;
/// Most stderr quoted in an error.
const MAX_STDERR: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub argv: Vec<String>,
}

impl Exec {
    /// Run the command with the shared process runner (own process group,
    /// whole group killed when it ends or when this future is dropped).
    pub async fn fetch(&self) -> Result<Listing, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("exec_command is empty".into());
        };
        let inv = Invocation {
            program: program.into(),
            args: args.iter().map(Into::into).collect(),
            env: Vec::new(),
            merge_stderr: false,
        };
        let done = process::run_capped(&inv, MAX_OUTPUT)
            .await
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if done.stdout_total > MAX_OUTPUT {
            return Err(format!("{program}: more than {MAX_OUTPUT} bytes of output"));
        }
        if !done.status.success() {
            let cut = &done.stderr[..done.stderr.len().min(MAX_STDERR)];
            let err = String::from_utf8_lossy(cut);
            let mut e = format!("{program} failed ({})", done.status.describe());
            if !err.trim().is_empty() {
                e.push_str(&format!(": {}", err.trim()));
            }
            return Err(e);
        }
        let text = String::from_utf8(done.stdout)
            .map_err(|_| format!("{program}: output is not UTF-8"))?;
        lines_result(parse_lines(&text))
    }
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

    /// Output with lines but not one backend is malformed: a failed fetch,
    /// so keeplast keeps the last good list. No output is an empty list.
    #[tokio::test]
    async fn output_without_one_backend_line_is_an_error() {
        let e = exec(&["/bin/sh", "-c", "echo '<html>oops</html>'; echo"])
            .fetch()
            .await
            .unwrap_err();
        assert!(
            e.contains("no line is a backend") && e.contains("oops"),
            "{e}"
        );
        let l = exec(&["/bin/true"]).fetch().await.unwrap();
        assert!(l.specs.is_empty());
    }

    #[tokio::test]
    async fn failures_are_errors() {
        let e = exec(&["/bin/sh", "-c", "echo boom >&2; exit 3"])
            .fetch()
            .await
            .unwrap_err();
        assert!(e.contains("boom") && e.contains('3'), "{e}");
        let e = exec(&["/bin/sh", "-c", "exit 4"])
            .fetch()
            .await
            .unwrap_err();
        assert_eq!(e, "/bin/sh failed (exit 4)");
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

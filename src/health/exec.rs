//! `exec`: run `command HOST PORT` without a shell, compare its stdout.
//!
//! gobetween's semantics: the whole stdout is compared byte-exactly (no
//! trimming) with `exec_expected_positive_output` (pass) and
//! `exec_expected_negative_output` (fail); an unset expected output is the
//! empty string. A non-zero exit, a kill or a start failure fails. Any other
//! output is [`Verdict::Unknown`](super::Verdict::Unknown): the state stays
//! as it is (gobetween marks the backend not live for one interval).

use std::time::Duration;

use super::process::{self, Finished, Invocation};
use super::{Cause, Outcome, Target};

pub async fn check(
    command: &str,
    positive: Option<&str>,
    negative: Option<&str>,
    target: &Target,
    _timeout: Option<Duration>,
) -> Outcome {
    let inv = Invocation {
        program: command.into(),
        args: vec![target.host.clone().into(), target.port.to_string().into()],
        env: Vec::new(),
        merge_stderr: false,
    };
    match process::run(&inv).await {
        Ok(done) => judge(&done, positive, negative),
        Err(e) => Outcome::fail(Cause::Spawn, format!("{command}: {e}")),
    }
}

/// The verdict on a finished command.
pub fn judge(done: &Finished, positive: Option<&str>, negative: Option<&str>) -> Outcome {
    let output = done.output();
    let outcome = if !done.status.success() {
        Outcome::fail(Cause::Exit, done.status.describe())
    } else if done.stdout_total > done.stdout.len() {
        Outcome::unknown(
            Cause::Unexpected,
            format!(
                "output of {} bytes matches neither expected output",
                done.stdout_total
            ),
        )
    } else if done.stdout == positive.unwrap_or("").as_bytes() {
        Outcome::pass("positive output")
    } else if done.stdout == negative.unwrap_or("").as_bytes() {
        Outcome::fail(Cause::Exit, "negative output")
    } else {
        Outcome::unknown(
            Cause::Unexpected,
            format!(
                "output {:?} matches neither expected output",
                super::capture(&done.stdout[..done.stdout.len().min(80)])
            ),
        )
    };
    outcome.with_output(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Verdict;
    use crate::health::process::Status;

    fn done(status: Status, out: &str) -> Finished {
        Finished {
            status,
            stdout: out.as_bytes().to_vec(),
            stdout_total: out.len(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn compares_the_whole_stdout_exactly() {
        let ok = Status::Exited(0);
        let (p, n) = (Some("1"), Some("0"));
        assert_eq!(judge(&done(ok, "1"), p, n).verdict, Verdict::Pass);
        let neg = judge(&done(ok, "0"), p, n);
        assert_eq!((neg.verdict, neg.cause), (Verdict::Fail, Cause::Exit));
        let odd = judge(&done(ok, "1\n"), p, n);
        assert_eq!(
            (odd.verdict, odd.cause),
            (Verdict::Unknown, Cause::Unexpected)
        );
        assert_eq!(odd.output.as_deref(), Some("1\n"));
    }

    #[test]
    fn exit_status_wins_over_output() {
        let f = judge(&done(Status::Exited(2), "1"), Some("1"), None);
        assert_eq!((f.verdict, f.detail.as_str()), (Verdict::Fail, "exit 2"));
        let k = judge(&done(Status::Signaled(9), ""), None, None);
        assert_eq!(k.detail, "killed by signal 9");
    }

    #[test]
    fn unset_outputs_are_empty_strings_and_cut_output_never_matches() {
        assert_eq!(
            judge(&done(Status::Exited(0), ""), None, Some("0")).verdict,
            Verdict::Pass
        );
        let mut big = done(Status::Exited(0), "1");
        big.stdout_total = 1 << 20;
        assert_eq!(judge(&big, Some("1"), None).verdict, Verdict::Unknown);
    }

    #[tokio::test]
    async fn runs_without_a_shell_with_host_and_port() {
        let t = Target::new("127.0.0.1", 8080);
        let o = check("/bin/echo", Some("127.0.0.1 8080\n"), None, &t, None).await;
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        let o = check("/bin/echo -n", None, None, &t, None).await;
        assert_eq!(
            (o.verdict, o.cause),
            (Verdict::Fail, Cause::Spawn),
            "no word splitting"
        );
    }
}

//! The command line: help, version, `-t` validation, formats, `-e`, `-p`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A valid one-server TOML config on `port` with one backend.
fn valid_toml(port: u16) -> String {
    format!(
        "[servers.web]\nbind = \"127.0.0.1:{port}\"\nbalance = \"roundrobin\"\n\n\
         [servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:9 weight=1\"]\n"
    )
}

/// The same config in JSON.
fn valid_json(port: u16) -> String {
    format!(
        r#"{{"servers": {{"web": {{"bind": "127.0.0.1:{port}", "balance": "roundrobin",
            "discovery": {{"kind": "static", "static_list": ["127.0.0.1:9 weight=1"]}}}}}}}}"#
    )
}

/// Write `text` to `dir/name` and return the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// `betwixt -t -c FILE [extra]`.
fn check(path: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["-t", "-c", path];
    args.extend_from_slice(extra);
    run_cli(&args)
}

/// The stderr line mentioning `needle`, or a panic showing all of stderr.
fn line_with<'a>(stderr: &'a str, needle: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in stderr:\n{stderr}"))
}

#[test]
fn help_lists_every_option() {
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for opt in [
        "-c",
        "--config",
        "-f",
        "--format",
        "-t",
        "--test",
        "-p",
        "--pidfile",
        "-e",
        "--use-config-env-vars",
        "-V",
        "--version",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}:\n{out}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    for flag in ["-V", "--version"] {
        let (code, out, _) = run_cli(&[flag]);
        assert_eq!(code, 0, "{flag}");
        assert!(
            out.contains(env!("CARGO_PKG_VERSION")) && out.contains("betwixt"),
            "{flag}: {out}"
        );
    }
}

#[test]
fn unknown_option_is_a_usage_error() {
    let (code, _, err) = run_cli(&["--bogus"]);
    assert_eq!(code, 2);
    // The error alone, with a pointer to --help (not the whole help text).
    assert_eq!(
        err.trim_end(),
        "betwixt: unknown option --bogus (see betwixt --help)"
    );
}

#[test]
fn test_mode_accepts_a_valid_config() {
    let dir = tmp();
    let path = write(dir.path(), "ok.toml", &valid_toml(free_port()));
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("configuration OK"), "{out}");
}

#[test]
fn test_mode_reports_every_error_with_its_path() {
    let dir = tmp();
    let text = format!(
        "[servers.web]\nbind = \"127.0.0.1:{}\"\nbalanse = \"roundrobin\"\nclient_idle_timeout = \"50\"\n\n\
         [servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:9\"]\n",
        free_port()
    );
    let path = write(dir.path(), "bad.toml", &text);
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("configuration OK"), "{out}");
    let typo = line_with(&err, "servers.web.balanse");
    assert!(
        typo.contains("did you mean") && typo.contains("balance"),
        "no suggestion of `balance`: {typo}"
    );
    line_with(&err, "servers.web.client_idle_timeout");
}

#[test]
fn obsolete_healthcheck_key_is_a_warning() {
    let dir = tmp();
    let text = format!(
        "{}\n[servers.web.healthcheck]\nkind = \"none\"\nping_timeout_duration = \"2s\"\n",
        valid_toml(free_port())
    );
    let path = write(dir.path(), "old.toml", &text);
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("configuration OK"), "{out}");
    let w = line_with(&err, "ping_timeout_duration");
    assert!(w.to_lowercase().contains("warn"), "not a warning: {w}");
}

#[test]
fn obsolete_globals_section_is_a_warning() {
    let dir = tmp();
    let text = format!("[globals]\n\n{}", valid_toml(free_port()));
    let path = write(dir.path(), "old.toml", &text);
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let w = line_with(&err, "globals");
    assert!(w.to_lowercase().contains("warn"), "not a warning: {w}");
}

#[test]
fn json_by_extension_and_by_flag() {
    let dir = tmp();
    let json = valid_json(free_port());
    let by_ext = write(dir.path(), "cfg.json", &json);
    let (code, out, err) = check(&by_ext, &[]);
    assert_eq!((code, out.contains("configuration OK")), (0, true), "{err}");

    let by_flag = write(dir.path(), "cfg.conf", &json);
    let (code, out, err) = check(&by_flag, &["-f", "json"]);
    assert_eq!((code, out.contains("configuration OK")), (0, true), "{err}");
    // Without the flag, a non-.json name is read as TOML, which JSON is not.
    let (code, _, err) = check(&by_flag, &[]);
    assert_eq!(code, 2, "JSON text parsed as TOML should fail");
    assert!(
        err.contains("the text reads as JSON: name the file *.json or pass -f json"),
        "no hint to read it as JSON:\n{err}"
    );
}

#[test]
fn missing_config_file_names_the_path() {
    let dir = tmp();
    let path = dir.path().join("nowhere.toml");
    let path = path.to_string_lossy();
    for extra in [&["-t"][..], &[][..]] {
        let mut args = vec!["-c", path.as_ref()];
        args.extend_from_slice(extra);
        let (code, _, err) = run_cli(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(path.as_ref()), "path not named: {err}");
    }
}

#[test]
fn env_vars_are_substituted_with_e() {
    let port = free_port();
    let text = valid_toml(0).replace("127.0.0.1:0", "127.0.0.1:${BETWIXT_TEST_PORT}");
    let dir = tmp();
    let path = write(dir.path(), "env.toml", &text);
    let port_s = port.to_string();
    let env = [("BETWIXT_TEST_PORT", port_s.as_str())];

    let (code, out, err) = run_cli_env(&["-t", "-e", "-c", &path], &env);
    assert_eq!((code, out.contains("configuration OK")), (0, true), "{err}");
    // Without -e the placeholder stays and the bind address is invalid.
    let (code, _, err) = run_cli_env(&["-t", "-c", &path], &env);
    assert_eq!(code, 2, "${{...}} must not be substituted without -e");
    assert!(
        err.contains("${BETWIXT_TEST_PORT} was not replaced: environment variables are substituted only with -e"),
        "no hint that -e is missing:\n{err}"
    );

    let mut b = Betwixt::spawn(&text, "env.toml", &["-e"], |cmd| {
        cmd.env("BETWIXT_TEST_PORT", &port_s);
    });
    b.wait_listening(&[format!("127.0.0.1:{port}")]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn an_unset_variable_is_named_next_to_the_errors_it_causes() {
    let text = valid_toml(0).replace("127.0.0.1:0", "127.0.0.1:${BETWIXT_TEST_UNSET_PORT}");
    let dir = tmp();
    let path = write(dir.path(), "env.toml", &text);
    let (code, _, err) = run_cli_env(&["-t", "-e", "-c", &path], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-e: ${BETWIXT_TEST_UNSET_PORT} is not set; it was replaced by nothing"),
        "{err}"
    );
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn pidfile_is_written_guarded_and_removed() {
    let port = free_port();
    let pid_dir = tmp();
    let pidfile: PathBuf = pid_dir.path().join("betwixt.pid");
    let pid_arg = pidfile.to_string_lossy().into_owned();
    let mut b = Betwixt::spawn(&valid_toml(port), "betwixt.toml", &["-p", &pid_arg], |_| {});
    b.wait_listening(&[format!("127.0.0.1:{port}")]);
    let written = wait_until(Duration::from_secs(5), || {
        read_pid(&pidfile) == Some(b.pid())
    });
    assert!(
        written,
        "pidfile does not hold {}: {:?}",
        b.pid(),
        read_pid(&pidfile)
    );

    // A second instance (other port, so only the pidfile can stop it).
    let dir = tmp();
    let other = write(dir.path(), "other.toml", &valid_toml(free_port()));
    let (code, _, err) = run_cli(&["-c", &other, "-p", &pid_arg]);
    assert_eq!(code, 1, "second instance: {err}");
    assert!(
        err.contains(&pid_arg) && err.contains(&b.pid().to_string()),
        "message should name the pidfile and the live pid: {err}"
    );
    assert_eq!(read_pid(&pidfile), Some(b.pid()), "pidfile was overwritten");

    b.signal(libc::SIGTERM);
    let status = b
        .wait_exit(Duration::from_secs(5))
        .expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", b.logs());
    assert!(!pidfile.exists(), "pidfile left behind after exit");
}

#[test]
fn a_start_that_fails_leaves_a_pidfile_it_did_not_write() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let pid_dir = tmp();
    let pidfile = pid_dir.path().join("betwixt.pid");
    // Another instance's (here: stale) pid; this start fails at bind.
    std::fs::write(&pidfile, "999999999\n").expect("write pidfile");
    let dir = tmp();
    let cfg = write(dir.path(), "b.toml", &valid_toml(port));
    let (code, _, err) = run_cli(&["-c", &cfg, "-p", &pidfile.to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(read_pid(&pidfile), Some(999_999_999), "{err}");
}

#[test]
fn stale_pidfile_does_not_block_start() {
    let port = free_port();
    let pid_dir = tmp();
    let pidfile = pid_dir.path().join("betwixt.pid");
    // A pid that cannot be live (above the kernel's pid_max ceiling).
    std::fs::write(&pidfile, "999999999\n").expect("write pidfile");
    let pid_arg = pidfile.to_string_lossy().into_owned();
    let mut b = Betwixt::spawn(&valid_toml(port), "betwixt.toml", &["-p", &pid_arg], |_| {});
    b.wait_listening(&[format!("127.0.0.1:{port}")]);
    assert!(wait_until(Duration::from_secs(5), || {
        read_pid(&pidfile) == Some(b.pid())
    }));
}

#[test]
fn a_log_file_that_cannot_be_opened_is_named_by_t_and_at_start() {
    let dir = tmp();
    let missing = dir.path().join("no-such-dir/betwixt.log");
    let logging = format!("[logging]\noutput = \"{}\"\n", missing.display());
    let path = write(
        dir.path(),
        "log.toml",
        &(logging + &valid_toml(free_port())),
    );
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 2, "-t passed a log file it cannot open:\n{out}{err}");
    let line = line_with(&err, "logging.output");
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert!(!missing.parent().unwrap().exists(), "-t created something");

    // A start names the file too (it said only "No such file or directory").
    let (code, _, err) = run_cli(&["-c", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot open output {}", missing.display())),
        "{err}"
    );

    // A log file in a writable directory passes, and -t does not create it.
    let fine = dir.path().join("betwixt.log");
    let logging = format!("[logging]\noutput = \"{}\"\n", fine.display());
    let path = write(dir.path(), "ok.toml", &(logging + &valid_toml(free_port())));
    let (code, out, err) = check(&path, &[]);
    assert_eq!((code, out.contains("configuration OK")), (0, true), "{err}");
    assert!(!fine.exists(), "-t created the log file");
}

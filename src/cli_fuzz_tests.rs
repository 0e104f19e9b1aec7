//! Bounded fuzzing of the command lines of `betwixt`, `betwixt check` and
//! `betwixt healthd`: any words give a command or a usage error.

use crate::fuzz;

#[test]
fn fuzz_command_lines() {
    let samples = [
        "-c /etc/betwixt.toml -f json -t --pidfile /run/b.pid -e",
        "check udp://127.0.0.1:53 --send \\x00 --expect ok --timeout 1.5",
        "check http://[::1]:8080/h --timeout 3s --insecure",
        "check tcp://127.0.0.1:1 --timeout 1e308",
        "healthd --listener 127.0.0.1:5500 --port 80 --port 65536 --script-timeout 86401 --singleflight",
        "healthd --script 'x y' --log-level debug -c /x",
        "from-url http://127.0.0.1/x -f toml",
        "from-consul 127.0.0.1:8500 --key a/b",
    ];
    fuzz::run_str("command line", 81, 1000, &samples, |line| {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        let _ = crate::cli::parse(&args);
    });
}

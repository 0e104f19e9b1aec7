//! The Buildroot package's make logic (buildroot/package/betwixt/betwixt.mk)
//! evaluated by GNU make with stand-ins for Buildroot's helpers: each
//! combination of the Config.in options gives the Cargo features and
//! environment the package documents. No Buildroot tree is needed.

use std::path::Path;
use std::process::Command;

/// Buildroot's helpers that betwixt.mk uses, then the package file, then a
/// target that prints the variables under test.
const STUB: &str = r#"
comma := ,
empty :=
space := $(empty) $(empty)
cargo-package :=
KCONFIG_ENABLE_OPT = $(1)
include $(MK)
$(info BUILD_OPTS=$(strip $(BETWIXT_CARGO_BUILD_OPTS)))
$(info INSTALL_OPTS=$(strip $(BETWIXT_CARGO_INSTALL_OPTS)))
$(info ENV=$(strip $(BETWIXT_CARGO_ENV)))
$(info KERNEL=$(strip $(BETWIXT_LINUX_CONFIG_FIXUPS)))
all: ;
"#;

/// `make` output lines for the options given (`y` or unset).
fn evaluate(tls: bool, ebpf: bool, unicode: bool) -> Option<Vec<String>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mk = repo.join("buildroot/package/betwixt/betwixt.mk");
    let dir = tempfile::tempdir().ok()?;
    let stub = dir.path().join("stub.mk");
    std::fs::write(&stub, STUB).ok()?;
    let opt = |on: bool| if on { "y" } else { "" };
    let out = Command::new("make")
        .arg("-s")
        .arg("-f")
        .arg(&stub)
        .arg(format!("MK={}", mk.display()))
        .arg(format!(
            "BR2_EXTERNAL_BETWIXT_PATH={}",
            repo.join("buildroot").display()
        ))
        .arg(format!("BR2_PACKAGE_BETWIXT_TLS={}", opt(tls)))
        .arg(format!("BR2_PACKAGE_BETWIXT_EBPF={}", opt(ebpf)))
        .arg(format!(
            "BR2_PACKAGE_BETWIXT_REGEX_UNICODE={}",
            opt(unicode)
        ))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "make failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text.lines().map(String::from).collect())
}

fn line<'a>(lines: &'a [String], key: &str) -> &'a str {
    let prefix = format!("{key}=");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

#[test]
fn each_option_set_picks_its_cargo_features_and_environment() {
    if Command::new("make").arg("--version").output().is_err() {
        eprintln!("skipped: GNU make is not installed");
        return;
    }
    let cases = [
        ((true, false, false), "--no-default-features --features tls"),
        (
            (true, true, false),
            "--no-default-features --features tls,ebpf",
        ),
        (
            (false, true, true),
            "--no-default-features --features ebpf,regex-unicode",
        ),
        ((false, false, false), "--no-default-features"),
    ];
    for ((tls, ebpf, unicode), features) in cases {
        let lines = evaluate(tls, ebpf, unicode).expect("run make");
        let build = line(&lines, "BUILD_OPTS");
        assert_eq!(build, features, "tls={tls} ebpf={ebpf} unicode={unicode}");
        // `cargo install` builds again: the same features, and no tracking
        // files in the image.
        let install = line(&lines, "INSTALL_OPTS");
        assert!(install.contains(features), "{install}");
        assert!(install.contains("--no-track"), "{install}");
        let env = line(&lines, "ENV");
        for size in [
            "CARGO_PROFILE_RELEASE_OPT_LEVEL=s",
            "CARGO_PROFILE_RELEASE_LTO=true",
            "CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1",
        ] {
            assert!(env.contains(size), "{env}");
        }
        // The eBPF option fails a build without clang, and turns on the
        // kernel options the fast path needs.
        assert_eq!(env.contains("BETWIXT_EBPF_REQUIRE=1"), ebpf, "{env}");
        let kernel = line(&lines, "KERNEL");
        for option in [
            "CONFIG_BPF_SYSCALL",
            "CONFIG_BPF_JIT",
            "CONFIG_BPF_STREAM_PARSER",
        ] {
            assert_eq!(kernel.contains(option), ebpf, "{kernel}");
        }
    }
}

//! Feature "ebpf": compile `ebpf/lb.bpf.c` into `$OUT_DIR/lb.bpf.o` with
//! clang and set `cfg(betwixt_ebpf_obj)`. Without clang (or when it fails)
//! the build goes on without the object, with a warning, and the daemon
//! reports "not compiled in" at run time; `BETWIXT_EBPF_REQUIRE=1` makes that
//! an error instead (for CI and release builds). With the feature off this
//! does nothing but declare the cfg.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "ebpf/lb.bpf.c";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(betwixt_ebpf_obj)");
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=LLVM_STRIP");
    println!("cargo::rerun-if-env-changed=BETWIXT_EBPF_REQUIRE");
    if env::var_os("CARGO_FEATURE_EBPF").is_none() {
        return;
    }
    match compile() {
        Ok(()) => println!("cargo::rustc-cfg=betwixt_ebpf_obj"),
        Err(why) if env::var("BETWIXT_EBPF_REQUIRE").as_deref() == Ok("1") => {
            panic!("feature \"ebpf\": {why} (BETWIXT_EBPF_REQUIRE=1)")
        }
        Err(why) => println!(
            "cargo::warning=feature \"ebpf\": {why}; building without the BPF object \
             (the sockmap fast path will report \"not compiled in\")"
        ),
    }
}

/// The BPF target of the byte order of the target the crate is built for:
/// the kernel runs BPF in its own byte order (a MIPS or PowerPC router is
/// big-endian, x86_64 and arm64 are little-endian).
fn bpf_target() -> Result<&'static str, String> {
    match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => Ok("bpfel"),
        Ok("big") => Ok("bpfeb"),
        other => Err(format!("unknown target byte order {other:?}")),
    }
}

fn compile() -> Result<(), String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let object = out.join("lb.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // Debian keeps asm/types.h only in the multiarch directory, which clang
    // does not search for the bpf target. The headers of the build host do:
    // the bytecode is the same for every target of one byte order.
    let host = env::var("HOST").unwrap_or_default();
    let arch = host.split('-').next().unwrap_or("x86_64");
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", bpf_target()?, "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&object)
        .status()
        .map_err(|e| format!("cannot run {clang}: {e}"))?;
    if !status.success() {
        return Err(format!("{clang} failed ({status})"));
    }
    // Drop DWARF, keep .BTF (aya needs it for the map definitions).
    let strip = env::var("LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".into());
    match Command::new(&strip).arg("-g").arg(&object).status() {
        Ok(s) if s.success() => {}
        Ok(s) => println!("cargo::warning={strip} -g failed ({s}); object left unstripped"),
        Err(e) => println!("cargo::warning=cannot run {strip}: {e}; object left unstripped"),
    }
    Ok(())
}

//! Lays out the release binary's code so that what procos runs sits together.
//!
//! A page fault on the binary maps the 64 KiB around it (the kernel's fault-around), so code
//! spread over the whole `.text` made nearly all of it resident: 8 of 12.5 MiB, for about
//! 1.7 MiB of functions ever run. `build/symbol-order.txt` lists those functions, hottest first
//! (`bench/symbol-order` writes it from a run under callgrind); the linker (LLD, Rust's default
//! on x86_64 Linux) places them first. Names it does not find (another compiler or dependency
//! version) are skipped: the layout degrades to the default, nothing breaks.
//! `PROCOS_NO_SYMBOL_ORDER=1` leaves the option out (for a linker without it).
//!
//! Relative relocations are packed (`-z pack-relative-relocs`, RELR) when the C library of the
//! build machine reads them (glibc 2.36 or later): the loader read all 0.8 MiB of `.rela.dyn` at
//! start, and those pages stayed resident; packed, they are a few KiB.

fn main() {
    const ORDER: &str = "build/symbol-order.txt";
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=PROCOS_NO_SYMBOL_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let lld_by_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if var("PROFILE") != "release" || !lld_by_default || !var("PROCOS_NO_SYMBOL_ORDER").is_empty() {
        return;
    }
    if var("HOST") == var("TARGET") && glibc_reads_relr() {
        println!("cargo:rustc-link-arg-bin=procos=-Wl,-z,pack-relative-relocs");
    }
    let path = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join(ORDER);
    if path.exists() {
        println!(
            "cargo:rustc-link-arg-bin=procos=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        println!("cargo:rustc-link-arg-bin=procos=-Wl,--no-warn-symbol-ordering");
    }
}

/// The build machine's glibc is 2.36 or later (`getconf GNU_LIBC_VERSION`: `glibc 2.36`).
fn glibc_reads_relr() -> bool {
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}

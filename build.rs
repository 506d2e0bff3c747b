//! Lays out the release binary's code so that what procos runs sits together.
//!
//! A page fault on the binary maps the 64 KiB around it (the kernel's fault-around), so code
//! spread over the whole `.text` made nearly all of it resident: 8 of 12.5 MiB, for about
//! 1.7 MiB of functions ever run. `build/symbol-order.txt` lists those functions, hottest first
//! (`bench/symbol-order` writes it from a run under callgrind); the linker (LLD, Rust's default
//! on x86_64 Linux) places them first. Names it does not find (another compiler or dependency
//! version) are skipped: the layout degrades to the default, nothing breaks.
//! `PROCOS_NO_SYMBOL_ORDER=1` leaves the option out (for a linker without it).

fn main() {
    const ORDER: &str = "build/symbol-order.txt";
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=PROCOS_NO_SYMBOL_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let lld_by_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if var("PROFILE") != "release" || !lld_by_default || !var("PROCOS_NO_SYMBOL_ORDER").is_empty()
    {
        return;
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

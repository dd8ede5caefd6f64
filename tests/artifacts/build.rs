//! Builds every guest of the workspace through `palisade-guest-build` (the path
//! `cargo guests` takes) and writes one constant per guest with its component's path.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = palisade_guest_build::workspace_root();
    for dir in ["sdk", "policies", "tests/guests"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=PALISADE_NO_APT");
    let guests = match palisade_guest_build::build_all(&root) {
        Ok(guests) => guests,
        Err(e) => panic!("building the wasm guests failed: {e}"),
    };
    let mut out = String::new();
    for guest in &guests {
        let ident = guest.name.to_uppercase().replace('-', "_");
        writeln!(out, "/// `{}`: `{}`.", guest.name, guest.wasm.display()).unwrap();
        writeln!(
            out,
            "pub const {ident}: &str = {:?};",
            guest.wasm.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "/// Every guest: (name, component path).").unwrap();
    writeln!(out, "pub const ALL: &[(&str, &str)] = &[").unwrap();
    for guest in &guests {
        writeln!(
            out,
            "    ({:?}, {:?}),",
            guest.name,
            guest.wasm.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(dest, out).unwrap();
}

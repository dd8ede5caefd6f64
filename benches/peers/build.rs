//! Builds the Extism plug-in (`extism-redact`, the `redact-pii` policy's code behind the
//! Extism PDK) with the guests' toolchain, and tells the bench where it is.

fn main() {
    let root = palisade_guest_build::workspace_root();
    for dir in ["benches/peers/extism-redact", "policies/redact-pii", "sdk"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let manifest = root.join("benches/peers/extism-redact/Cargo.toml");
    // A target directory of its own: this build makes `redact-pii` without its exports,
    // and must not overwrite the workspace guests' `redact_pii.wasm`.
    let wasm =
        palisade_guest_build::build_core(&manifest, &root.join("target").join("guests-extism"))
            .unwrap_or_else(|e| panic!("building the Extism plug-in failed: {e}"));
    println!("cargo:rustc-env=EXTISM_REDACT_WASM={}", wasm.display());
}

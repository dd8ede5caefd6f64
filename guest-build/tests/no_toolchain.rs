//! On a machine with no wasm32 toolchain, where installing is not allowed, the guest
//! build stops and says exactly what to install.

use std::process::Command;

#[test]
fn a_bare_machine_gets_an_exact_install_message() {
    let empty = tempfile_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-guest-build"))
        .env("PATH", &empty) // no rustc, no apt-get
        .env("PALISADE_DEBIAN_RUSTC", empty.join("rustc"))
        .env("PALISADE_NO_APT", "1")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rustup target add wasm32-unknown-unknown"),
        "{err}"
    );
    assert!(
        err.contains("apt-get install -y --no-install-recommends rustc-web rust-web-src"),
        "{err}"
    );
    let _ = std::fs::remove_dir(&empty);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-no-toolchain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

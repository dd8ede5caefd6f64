//! `cargo guests`: builds every Rust guest into `target/policies/<name>.wasm`.
//!
//! `cargo guests --toolchain` only finds (installing or upgrading it where allowed) the
//! wasm32 toolchain and prints it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = palisade_guest_build::workspace_root();
    let toolchain_only = std::env::args().nth(1).is_some_and(|a| a == "--toolchain");
    let result = if toolchain_only {
        palisade_guest_build::toolchain::Toolchain::detect().map(|t| println!("{t}"))
    } else {
        palisade_guest_build::build_all(&root).map(|built| {
            for guest in built {
                println!("{}", guest.wasm.display());
            }
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

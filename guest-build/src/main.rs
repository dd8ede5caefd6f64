//! `cargo guests`: builds every Rust guest into `target/policies/<name>.wasm`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = palisade_guest_build::workspace_root();
    match palisade_guest_build::build_all(&root) {
        Ok(built) => {
            for guest in built {
                println!("{}", guest.wasm.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Paths of the wasm guests built from this workspace's sources, for tests and benches.
//! Depending on this crate builds them (see `build.rs`).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The workspace root.
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

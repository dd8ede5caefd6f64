//! Shared test fixtures: an engine, the built guests, and hand-written core modules
//! turned into components against the real WIT contract.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use palisade_runtime::{Config, Context, Engine, Limits, Request, WasmPolicy};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

/// The contract's WIT directory.
pub(crate) fn wit_dir() -> PathBuf {
    PathBuf::from(palisade_test_artifacts::WORKSPACE).join("sdk/wit")
}

/// One engine for the whole test binary (as a gateway would have).
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&Config::default()).expect("engine"))
}

/// Limits that keep hostile tests quick.
pub(crate) fn quick() -> Limits {
    Limits::default().timeout(Duration::from_millis(250))
}

/// Loads a built guest by path.
pub(crate) fn guest(path: &str) -> WasmPolicy {
    WasmPolicy::from_file(engine(), path).unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// A request to `path`.
pub(crate) fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        ..Request::default()
    }
}

/// A context for `tenant`.
pub(crate) fn ctx(tenant: &str) -> Context {
    Context {
        tenant: tenant.into(),
        route: "test".into(),
        correlation_id: "c-1".into(),
        ..Context::default()
    }
}

/// Embeds `world` (from the contract, plus `extra` WIT packages) into a core module
/// written in WAT and componentizes it.
pub(crate) fn component_with(
    wat: &str,
    world: &str,
    extra: &[&str],
    contract: Option<String>,
) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let mut main = match contract {
        Some(text) => resolve
            .push_str("policy.wit", &text)
            .expect("contract parses"),
        None => resolve.push_dir(wit_dir()).expect("contract parses").0,
    };
    for (i, text) in extra.iter().enumerate() {
        main = resolve
            .push_str(format!("extra{i}.wit"), text)
            .expect("extra WIT parses");
    }
    let world = resolve
        .select_world(&[main], Some(world))
        .expect("world exists");
    let mut module = wat::parse_str(wat).expect("fixture WAT parses");
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8).expect("embeds");
    ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .expect("componentizes")
}

/// A request-phase component whose `on-request` body is `body` (a core function
/// `(param i32) (result i32)`); `imports` are extra core imports.
pub(crate) fn request_component(imports: &str, body: &str) -> Vec<u8> {
    component_with(&core_module(imports, body), "request-policy", &[], None)
}

/// The core module skeleton every fixture shares: a memory, a bump allocator and
/// the request-phase export.
pub(crate) fn core_module(imports: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 17)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $bump (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "palisade:policy/request-phase@0.1.0#on-request") (param i32) (result i32)
    {body})
)"#
    )
}

/// Asserts that a `state-probe` run saw a fresh instance: its static counter at 1, and
/// nothing a previous run left in memory.
pub(crate) fn assert_fresh_state(inv: palisade_runtime::Invocation<Request>) {
    let Ok(palisade_runtime::Decision::Continue(req)) = inv.result else {
        panic!("{:?}", inv.result)
    };
    let header = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-count").as_deref(), Some("1"));
    assert_eq!(header("x-leftover").as_deref(), Some("absent"));
}

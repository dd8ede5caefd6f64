//! Palisade's sandbox runtime: runs untrusted policy code (WebAssembly components and
//! Luau scripts) against one typed contract, with every limit on by default.
//!
//! ```no_run
//! use palisade_runtime::{Config, Context, Decision, Engine, Policy, Request};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&Config::default())?;
//! let policy = Policy::from_file(&engine, "target/policies/inject-headers.wasm")?;
//! let request = Request {
//!     method: "GET".into(),
//!     path: "/v1/users/7".into(),
//!     ..Request::default()
//! };
//! let invocation = policy.on_request(&Context::default(), request);
//! match invocation.result? {
//!     Decision::Continue(req) => println!("forward {} {}", req.method, req.path),
//!     Decision::Respond(res) => println!("answered {}", res.status),
//! }
//! println!("fuel {} peak memory {}", invocation.stats.fuel, invocation.stats.memory_peak);
//! # Ok(())
//! # }
//! ```
//!
//! # Core concepts
//!
//! - [`Config`]: engine-wide settings and the default [`Limits`], every default documented.
//! - [`Engine`]: shared compiler, pooling allocator and epoch ticker. Build one per process.
//! - [`Policy`]: a module of either [`Kind`] ([`WasmPolicy`], [`LuaPolicy`]), validated
//!   and compiled once, shareable across threads. Each invocation gets a fresh `Store`
//!   and a fresh instance: nothing survives it.
//! - [`Limits`]: fuel, memory, table and instance counts, deadline, output, log and
//!   host-call bounds. On by default; turning fuel off is explicit.
//! - [`Invocation`]: a typed [`Decision`] or [`Error`], plus logs, redacted paths and [`Stats`].
//! - [`LuaPolicy`]: the same contract for Luau scripts (feature `lua`, on by default).
//!
//! Feature `bench` adds `ReusedInstance`, the reused-instance baseline the benchmarks
//! compare fresh instances with; it is not part of the API.
//! - [`InvocationPool`]: runs invocations from async code without stalling the executor.
//!
//! The contract itself is `sdk/wit/policy.wit`, explained in `docs/abi.md`.

mod bindings;
mod cache;
mod config;
mod engine;
mod error;
mod host;
mod invocation;
mod limits;
#[cfg(feature = "lua")]
mod lua;
mod message;
mod policy;
mod pool;
mod report;
mod validate;
mod wasm;

pub use crate::cache::CacheOutcome;
pub use crate::config::Config;
pub use crate::engine::Engine;
pub use crate::error::{Error, ErrorClass, Result};
pub use crate::host::MAX_SEAL_VALUE;
#[cfg(feature = "bench")]
pub use crate::invocation::ReusedInstance;
pub use crate::limits::Limits;
#[cfg(feature = "lua")]
pub use crate::lua::LuaPolicy;
pub use crate::message::{
    Context, Decision, Headers, Identity, Invocation, LogLevel, LogLine, Request, Response, SealFn,
    Sealer, Stats,
};
pub use crate::policy::{Kind, Phases, Policy};
pub use crate::pool::InvocationPool;
pub use crate::report::{MAX_REDACTED_BYTES, MAX_REDACTED_PATHS};
pub use crate::validate::CONTRACT_VERSION;
pub use crate::wasm::WasmPolicy;

//! Any policy module, whatever language it is written in.

use std::path::Path;

use crate::engine::Engine;
use crate::error::Result;
use crate::limits::Limits;
#[cfg(feature = "lua")]
use crate::lua::LuaPolicy;
use crate::message::{Context, Invocation, Request, Response};
use crate::policy::Policy;

/// A loaded policy module: a Wasm component or a Luau script. Both honour the same
/// contract, limits and typed outcomes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Module {
    /// A WebAssembly component.
    Wasm(Policy),
    /// A Luau script.
    #[cfg(feature = "lua")]
    Lua(LuaPolicy),
}

impl Module {
    /// Loads a module file: `.lua` files as Luau scripts, anything else as Wasm.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_file`] and [`LuaPolicy::new`].
    pub fn from_file(engine: &Engine, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        #[cfg(feature = "lua")]
        if path.extension().is_some_and(|e| e == "lua") {
            return LuaPolicy::from_file(engine, path).map(Module::Lua);
        }
        Policy::from_file(engine, path).map(Module::Wasm)
    }

    /// Loads a module from its bytes: a Luau script when `lua`, else a Wasm component.
    ///
    /// # Errors
    ///
    /// As [`Policy::new`] and [`LuaPolicy::new`].
    pub fn from_bytes(engine: &Engine, name: &str, lua: bool, bytes: &[u8]) -> Result<Self> {
        #[cfg(feature = "lua")]
        if lua {
            return LuaPolicy::new(engine, name, bytes).map(Module::Lua);
        }
        #[cfg(not(feature = "lua"))]
        if lua {
            return Err(crate::error::Error::InvalidModule(
                "Lua support is not compiled in".into(),
            ));
        }
        Policy::new(engine, name, bytes).map(Module::Wasm)
    }

    /// Which phases the module implements.
    pub fn phases(&self) -> crate::policy::Phases {
        match self {
            Module::Wasm(p) => p.phases(),
            #[cfg(feature = "lua")]
            Module::Lua(p) => p.phases(),
        }
    }

    /// Returns this module with other limits.
    pub fn with_limits(&self, limits: Limits) -> Self {
        match self {
            Module::Wasm(p) => Module::Wasm(p.with_limits(limits)),
            #[cfg(feature = "lua")]
            Module::Lua(p) => Module::Lua(p.with_limits(limits)),
        }
    }

    /// The limits invocations run under.
    pub fn limits(&self) -> &Limits {
        match self {
            Module::Wasm(p) => p.limits(),
            #[cfg(feature = "lua")]
            Module::Lua(p) => p.limits(),
        }
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        match self {
            Module::Wasm(p) => p.name(),
            #[cfg(feature = "lua")]
            Module::Lua(p) => p.name(),
        }
    }

    /// SHA-256 of the module's bytes.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Module::Wasm(p) => p.digest(),
            #[cfg(feature = "lua")]
            Module::Lua(p) => p.digest(),
        }
    }

    /// Runs the request phase. See [`Policy::on_request`].
    pub fn on_request(&self, ctx: &Context, req: Request) -> Invocation<Request> {
        match self {
            Module::Wasm(p) => p.on_request(ctx, req),
            #[cfg(feature = "lua")]
            Module::Lua(p) => p.on_request(ctx, req),
        }
    }

    /// Runs the response phase. See [`Policy::on_response`].
    pub fn on_response(&self, ctx: &Context, req: &Request, res: Response) -> Invocation<Response> {
        match self {
            Module::Wasm(p) => p.on_response(ctx, req, res),
            #[cfg(feature = "lua")]
            Module::Lua(p) => p.on_response(ctx, req, res),
        }
    }
}

//! [`Policy`]: any policy module, whatever language it is written in ([`Kind`]). Each
//! kind lives in its own module: [`WasmPolicy`] (`wasm.rs`, run by `invocation.rs`) and
//! [`LuaPolicy`] (`lua/`).

use std::path::Path;

use crate::engine::Engine;
use crate::error::Result;
use crate::limits::Limits;
#[cfg(feature = "lua")]
use crate::lua::LuaPolicy;
use crate::message::{Context, Invocation, Request, Response};
use crate::wasm::WasmPolicy;

/// Which phases a policy implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Exports `palisade:policy/request-phase`.
    pub request: bool,
    /// Exports `palisade:policy/response-phase`.
    pub response: bool,
}

/// The language a policy module is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A WebAssembly component (Rust, JavaScript, any language with a component
    /// toolchain).
    Wasm,
    /// A Luau script.
    Lua,
}

impl Kind {
    /// The kind a module file's name says: `.lua` is Luau, anything else Wasm.
    pub fn of_path(path: &Path) -> Kind {
        if path.extension().is_some_and(|e| e == "lua") {
            Kind::Lua
        } else {
            Kind::Wasm
        }
    }

    /// Its name, as the module registry stores it (`wasm`, `lua`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wasm => "wasm",
            Kind::Lua => "lua",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "wasm" => Ok(Kind::Wasm),
            "lua" => Ok(Kind::Lua),
            other => Err(format!("unknown module kind {other:?} (wasm or lua)")),
        }
    }
}

/// A loaded policy module: a Wasm component or a Luau script. Both honour the same
/// contract, limits and typed outcomes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Policy {
    /// A WebAssembly component.
    Wasm(WasmPolicy),
    /// A Luau script.
    #[cfg(feature = "lua")]
    Lua(LuaPolicy),
}

impl Policy {
    /// Loads a module file, of the kind its name says ([`Kind::of_path`]).
    ///
    /// # Errors
    ///
    /// As [`WasmPolicy::from_file`] and [`LuaPolicy::from_file`].
    pub fn from_file(engine: &Engine, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match Kind::of_path(path) {
            #[cfg(feature = "lua")]
            Kind::Lua => LuaPolicy::from_file(engine, path).map(Policy::Lua),
            _ => WasmPolicy::from_file(engine, path).map(Policy::Wasm),
        }
    }

    /// Loads a module of `kind` from its bytes.
    ///
    /// # Errors
    ///
    /// As [`WasmPolicy::new`] and [`LuaPolicy::new`]; a Lua module when Lua support is not
    /// compiled in.
    pub fn from_bytes(engine: &Engine, name: &str, kind: Kind, bytes: &[u8]) -> Result<Self> {
        match kind {
            Kind::Wasm => WasmPolicy::new(engine, name, bytes).map(Policy::Wasm),
            #[cfg(feature = "lua")]
            Kind::Lua => LuaPolicy::new(engine, name, bytes).map(Policy::Lua),
            #[cfg(not(feature = "lua"))]
            Kind::Lua => Err(crate::error::Error::InvalidModule(
                "Lua support is not compiled in".into(),
            )),
        }
    }

    /// The module's language.
    pub fn kind(&self) -> Kind {
        match self {
            Policy::Wasm(_) => Kind::Wasm,
            #[cfg(feature = "lua")]
            Policy::Lua(_) => Kind::Lua,
        }
    }

    /// Which phases the module implements.
    pub fn phases(&self) -> Phases {
        match self {
            Policy::Wasm(p) => p.phases(),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => p.phases(),
        }
    }

    /// Returns this module with other limits.
    pub fn with_limits(&self, limits: Limits) -> Self {
        match self {
            Policy::Wasm(p) => Policy::Wasm(p.with_limits(limits)),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => Policy::Lua(p.with_limits(limits)),
        }
    }

    /// The limits invocations run under.
    pub fn limits(&self) -> &Limits {
        match self {
            Policy::Wasm(p) => p.limits(),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => p.limits(),
        }
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        match self {
            Policy::Wasm(p) => p.name(),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => p.name(),
        }
    }

    /// SHA-256 of the module's bytes.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Policy::Wasm(p) => p.digest(),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => p.digest(),
        }
    }

    /// Runs the request phase. See [`WasmPolicy::on_request`].
    pub fn on_request(&self, ctx: &Context, req: Request) -> Invocation<Request> {
        match self {
            Policy::Wasm(p) => p.on_request(ctx, req),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => p.on_request(ctx, req),
        }
    }

    /// Runs the response phase. See [`WasmPolicy::on_response`].
    pub fn on_response(&self, ctx: &Context, req: &Request, res: Response) -> Invocation<Response> {
        match self {
            Policy::Wasm(p) => p.on_response(ctx, req, res),
            #[cfg(feature = "lua")]
            Policy::Lua(p) => p.on_response(ctx, req, res),
        }
    }
}

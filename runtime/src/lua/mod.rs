//! Sandboxed Luau policies (placeholder while being written).
use std::path::Path;
use crate::{Context, Engine, Invocation, Limits, Request, Response, Result};

/// A Luau policy.
#[derive(Debug, Clone)]
pub struct LuaPolicy { limits: Limits }

impl LuaPolicy {
    /// Loads a script.
    pub fn from_file(_engine: &Engine, _path: &Path) -> Result<Self> { todo!() }
    /// With limits.
    pub fn with_limits(&self, limits: Limits) -> Self { LuaPolicy { limits } }
    /// Limits.
    pub fn limits(&self) -> &Limits { &self.limits }
    /// Name.
    pub fn name(&self) -> &str { "" }
    /// Digest.
    pub fn digest(&self) -> [u8; 32] { [0; 32] }
    /// Request.
    pub fn on_request(&self, _ctx: &Context, _req: Request) -> Invocation<Request> { todo!() }
    /// Response.
    pub fn on_response(&self, _ctx: &Context, _req: &Request, _res: Response) -> Invocation<Response> { todo!() }
}

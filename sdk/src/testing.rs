//! A native test harness: run a [`Policy`] on the host with the same types and no wasm.
//!
//! ```
//! use palisade_sdk::{testing, Context, Request};
//! # struct Noop;
//! # impl palisade_sdk::Policy for Noop {}
//! let out = testing::request::<Noop>(&Context::default(), Request::get("/"));
//! assert!(out.action.unwrap().into_continue().is_some());
//! assert!(out.logs.is_empty());
//! ```

use crate::backend::native;
use crate::{Action, Context, LogLevel, Policy, Request, RequestHead, Response, Result};

/// What a native invocation produced.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The policy's decision or error.
    pub action: Result<Action<T>>,
    /// Lines it logged.
    pub logs: Vec<(LogLevel, String)>,
    /// Paths it reported as redacted.
    pub redacted: Vec<String>,
}

/// Runs `P`'s request phase natively.
pub fn request<P: Policy>(ctx: &Context, req: Request) -> Outcome<Request> {
    with_recorder(ctx, || P::on_request(ctx, req))
}

/// Runs `P`'s response phase natively.
pub fn response<P: Policy>(ctx: &Context, req: &RequestHead, res: Response) -> Outcome<Response> {
    with_recorder(ctx, || P::on_response(ctx, req, res))
}

fn with_recorder<T>(ctx: &Context, f: impl FnOnce() -> Result<Action<T>>) -> Outcome<T> {
    native::begin(ctx.config.clone());
    let action = f();
    let (logs, redacted) = native::finish();
    Outcome {
        action,
        logs,
        redacted,
    }
}

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

use std::cell::RefCell;

use crate::{Action, Context, LogLevel, Policy, Request, RequestHead, Response, Result};

#[derive(Default)]
struct Recorder {
    logs: Vec<(LogLevel, String)>,
    redacted: Vec<String>,
    config: Vec<(String, String)>,
}

thread_local! {
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

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
    RECORDER.with(|r| {
        *r.borrow_mut() = Recorder {
            config: ctx.config.clone(),
            ..Recorder::default()
        }
    });
    let action = f();
    let recorder = RECORDER.with(|r| std::mem::take(&mut *r.borrow_mut()));
    Outcome {
        action,
        logs: recorder.logs,
        redacted: recorder.redacted,
    }
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    RECORDER.with(|r| r.borrow_mut().logs.push((level, message.to_string())));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_redacted(path: &str) {
    RECORDER.with(|r| r.borrow_mut().redacted.push(path.to_string()));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn config(key: &str) -> Option<String> {
    RECORDER.with(|r| {
        r.borrow()
            .config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

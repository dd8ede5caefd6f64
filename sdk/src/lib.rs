//! Write Palisade policies in Rust.
//!
//! A policy is a type implementing [`Policy`]; both phases default to continuing
//! unchanged, so implement only what you need. [`export!`] turns it into the
//! component the gateway runs. The same code unit-tests natively with [`testing`].
//!
//! ```
//! use palisade_sdk::{Action, Context, Policy, Request, Result};
//!
//! struct TagRequests;
//!
//! impl Policy for TagRequests {
//!     fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
//!         let tag = ctx.config("tag").unwrap_or("palisade").to_string();
//!         req.headers.insert("x-tag", tag);
//!         Ok(Action::Continue(req))
//!     }
//! }
//!
//! palisade_sdk::export!(TagRequests);
//!
//! // A native unit test: same types, no wasm.
//! let ctx = Context::default().with_config("tag", "blue");
//! let out = palisade_sdk::testing::request::<TagRequests>(&ctx, Request::get("/"));
//! let req = out.action.unwrap().into_continue().unwrap();
//! assert_eq!(req.headers.get("X-Tag"), Some("blue"));
//! ```
//!
//! Build with `cargo guests` (see `docs/sdk.md`), run with
//! `palisade run target/policies/<name>.wasm --input request.json`.

#[cfg(all(
    feature = "allocator",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[allow(unsafe_code)] // a global allocator cannot be written without it; see the module
mod alloc;
mod backend;
#[doc(hidden)]
pub mod bindings;
mod glue;
mod host;
mod message;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use crate::host::{LogLevel, SealMode, config, log, redacted, seal};
pub use crate::message::{
    Action, Context, Error, Headers, Identity, Request, RequestHead, Response, Result,
};

/// A policy: what happens to a request before it goes upstream and to the response
/// on its way back. Both methods default to continuing unchanged.
pub trait Policy {
    /// The request phase. Return [`Action::Continue`] with the request to forward (changed
    /// or not), [`Action::Respond`] to answer the client without calling the upstream,
    /// or an [`Error`] to fail the request (the gateway answers 500 and audits the message).
    fn on_request(ctx: &Context, req: Request) -> Result<Action<Request>> {
        let _ = ctx;
        Ok(Action::Continue(req))
    }

    /// The response phase. `req` is the request as it was sent upstream (its head only).
    /// Return [`Action::Continue`] with the response to send on, [`Action::Respond`] to
    /// replace it, or an [`Error`].
    fn on_response(ctx: &Context, req: &RequestHead, res: Response) -> Result<Action<Response>> {
        let _ = (ctx, req);
        Ok(Action::Continue(res))
    }
}

/// Exports a [`Policy`] as the component's implementation of the contract.
///
/// Use it once per crate, at the top level. On non-wasm targets it expands to
/// nothing, so the crate also builds natively for unit tests.
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __PalisadeExport = $crate::__private::Adapter<$policy>;
            $crate::__export_policy_impl!(__PalisadeExport with_types_in $crate::__private::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::glue::Adapter;
}

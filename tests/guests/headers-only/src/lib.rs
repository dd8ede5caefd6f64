//! A test and bench guest that only touches headers: it never reads the body, so
//! its cost must not depend on the body's size.

use palisade_sdk::{Action, Context, Policy, Request, Result};

/// Adds `x-palisade: seen` and leaves the body alone.
pub struct HeadersOnly;

impl Policy for HeadersOnly {
    fn on_request(_ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        req.headers.insert("x-palisade", "seen");
        Ok(Action::Continue(req))
    }
}

palisade_sdk::export!(HeadersOnly);

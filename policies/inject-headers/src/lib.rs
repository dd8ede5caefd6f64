//! `inject-headers`: adds, overwrites and removes request and response headers from config.
//!
//! Config keys (`<phase>` is `request` or `response`):
//! - `<phase>.set.<Header-Name>` = value: set, replacing any existing values;
//! - `<phase>.add.<Header-Name>` = value: append another value;
//! - `<phase>.remove` = comma-separated header names to drop.
//!
//! Removals run first, then sets, then adds, so `remove` + `set` of one name is a replace.

use palisade_sdk::{Action, Context, Headers, Policy, Request, RequestHead, Response, Result};

/// Applies the config's header edits for `phase` to `headers`; returns how many edits ran.
pub fn apply(ctx: &Context, phase: &str, headers: &mut Headers) -> usize {
    let mut edits = 0;
    if let Some(list) = ctx.config(&format!("{phase}.remove")) {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            headers.remove(name);
            edits += 1;
        }
    }
    let set = format!("{phase}.set.");
    let add = format!("{phase}.add.");
    for (key, value) in &ctx.config {
        if let Some(name) = key.strip_prefix(&set) {
            headers.insert(name, value.clone());
            edits += 1;
        }
    }
    for (key, value) in &ctx.config {
        if let Some(name) = key.strip_prefix(&add) {
            headers.append(name, value.clone());
            edits += 1;
        }
    }
    edits
}

/// The policy.
pub struct InjectHeaders;

impl Policy for InjectHeaders {
    fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        apply(ctx, "request", &mut req.headers);
        Ok(Action::Continue(req))
    }

    fn on_response(
        ctx: &Context,
        _req: &RequestHead,
        mut res: Response,
    ) -> Result<Action<Response>> {
        apply(ctx, "response", &mut res.headers);
        Ok(Action::Continue(res))
    }
}

palisade_sdk::export!(InjectHeaders);

#[cfg(test)]
mod tests {
    use palisade_sdk::testing;

    use super::*;

    #[test]
    fn removes_then_sets_then_adds() {
        let ctx = Context::default()
            .with_config("request.remove", "X-Internal, x-debug")
            .with_config("request.set.X-Env", "prod")
            .with_config("request.add.Via", "palisade");
        let req = Request::get("/")
            .with_header("x-internal", "1")
            .with_header("X-Debug", "1")
            .with_header("x-env", "dev")
            .with_header("via", "edge");
        let out = testing::request::<InjectHeaders>(&ctx, req)
            .action
            .unwrap()
            .into_continue()
            .unwrap();
        assert!(!out.headers.contains("x-internal"));
        assert!(!out.headers.contains("x-debug"));
        assert_eq!(out.headers.get("x-env"), Some("prod"));
        assert_eq!(
            out.headers.get_all("via").collect::<Vec<_>>(),
            vec!["edge", "palisade"]
        );
    }

    #[test]
    fn response_phase_uses_its_own_keys() {
        let ctx = Context::default()
            .with_config("request.set.x-a", "req")
            .with_config("response.set.Strict-Transport-Security", "max-age=63072000");
        let out = testing::response::<InjectHeaders>(
            &ctx,
            &Request::get("/").head(),
            Response::new(200, ""),
        );
        let res = out.action.unwrap().into_continue().unwrap();
        assert_eq!(
            res.headers.get("strict-transport-security"),
            Some("max-age=63072000")
        );
        assert!(!res.headers.contains("x-a"));
    }
}

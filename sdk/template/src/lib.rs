//! A starting point: tags requests with a header from config and masks one JSON field
//! of responses. Replace with your own logic; keep `export!` and the tests' shape.

use palisade_sdk::{Action, Context, Policy, Request, RequestHead, Response, Result};
use serde_json::Value;

/// The policy.
pub struct MyPolicy;

impl Policy for MyPolicy {
    fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        let team = ctx.config("team").unwrap_or("unknown").to_string();
        req.headers.insert("x-team", team);
        Ok(Action::Continue(req))
    }

    fn on_response(ctx: &Context, _req: &RequestHead, mut res: Response) -> Result<Action<Response>> {
        let field = ctx.config("mask").unwrap_or("secret").to_string();
        if let Ok(mut doc) = res.json::<Value>() {
            if let Some(v) = doc.get_mut(&field) {
                *v = Value::String("***".into());
                palisade_sdk::redacted(&format!("$['{field}']"));
                res.set_json(&doc)?;
            }
        }
        Ok(Action::Continue(res))
    }
}

palisade_sdk::export!(MyPolicy);

#[cfg(test)]
mod tests {
    use palisade_sdk::testing;
    use serde_json::json;

    use super::*;

    #[test]
    fn tags_requests() {
        let ctx = Context::default().with_config("team", "payments");
        let out = testing::request::<MyPolicy>(&ctx, Request::get("/"));
        let req = out.action.unwrap().into_continue().unwrap();
        assert_eq!(req.headers.get("x-team"), Some("payments"));
    }

    #[test]
    fn masks_the_configured_field() {
        let ctx = Context::default().with_config("mask", "token");
        let res = Response::from_json(200, &json!({"token": "abc", "ok": true}));
        let out = testing::response::<MyPolicy>(&ctx, &Request::get("/").head(), res);
        assert_eq!(out.redacted, vec!["$['token']"]);
        let body = out.action.unwrap().into_continue().unwrap().into_body();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"token": "***", "ok": true}));
    }
}

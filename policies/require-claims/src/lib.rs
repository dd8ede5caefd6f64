//! `require-claims`: answers 403 with a safe body unless the caller's verified identity
//! has the configured scopes and claims.
//!
//! Config keys:
//! - `scopes`: comma-separated scopes, all required;
//! - `claims`: a JSON object; each claim must equal the value, or, when the caller's
//!   claim is an array, contain it (`{"role": "admin", "tid": "acme"}`);
//! - `status` (default 403) and `message` (default `forbidden`) of the refusal.
//!
//! A request without an identity is refused. The refusal never says which check failed
//! (the log line does, by claim name only).

use palisade_sdk::{Action, Context, Error, LogLevel, Policy, Request, Result, log};
use serde_json::{Map, Value};

/// Checks the caller; `Ok(None)` when allowed, `Ok(Some(reason))` when not.
///
/// # Errors
///
/// When the config is malformed.
pub fn check(ctx: &Context) -> Result<Option<String>> {
    let required: Map<String, Value> = match ctx.config("claims") {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Error::msg(format!("`claims` must be a JSON object: {e}")))?,
        None => Map::new(),
    };
    let Some(identity) = &ctx.identity else {
        return Ok(Some("no identity".into()));
    };
    for scope in ctx
        .config("scopes")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !identity.has_scope(scope) {
            return Ok(Some(format!("missing scope `{scope}`")));
        }
    }
    for (name, want) in &required {
        let ok = match identity.claim(name) {
            Some(Value::Array(items)) if !want.is_array() => items.contains(want),
            Some(have) => have == want,
            None => false,
        };
        if !ok {
            return Ok(Some(format!("claim `{name}` does not match")));
        }
    }
    Ok(None)
}

/// The policy.
pub struct RequireClaims;

impl Policy for RequireClaims {
    fn on_request(ctx: &Context, req: Request) -> Result<Action<Request>> {
        match check(ctx)? {
            None => Ok(Action::Continue(req)),
            Some(reason) => {
                log(LogLevel::Info, &format!("refused: {reason}"));
                let status = match ctx.config("status") {
                    Some(s) => s
                        .parse()
                        .map_err(|_| Error::msg(format!("`status` must be a number, got `{s}`")))?,
                    None => 403,
                };
                Ok(Action::deny(
                    status,
                    ctx.config("message").unwrap_or("forbidden"),
                ))
            }
        }
    }
}

palisade_sdk::export!(RequireClaims);

#[cfg(test)]
mod tests {
    use palisade_sdk::{Identity, testing};
    use serde_json::json;

    use super::*;

    fn ctx(scopes: &[&str], claims: Value) -> Context {
        Context::default()
            .with_config("scopes", "read, write")
            .with_config("claims", r#"{"role": "admin", "tid": "acme"}"#)
            .with_identity(Identity {
                subject: "alice".into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                claims: claims.as_object().unwrap().clone().into_iter().collect(),
            })
    }

    #[test]
    fn allows_when_everything_matches() {
        let c = ctx(
            &["read", "write", "x"],
            json!({"role": ["user", "admin"], "tid": "acme"}),
        );
        let out = testing::request::<RequireClaims>(&c, Request::get("/"));
        assert!(out.action.unwrap().into_continue().is_some());
    }

    #[test]
    fn refuses_missing_scope_wrong_claim_and_anonymous() {
        for c in [
            ctx(&["read"], json!({"role": "admin", "tid": "acme"})),
            ctx(&["read", "write"], json!({"role": "user", "tid": "acme"})),
            ctx(&["read", "write"], json!({"role": "admin"})),
            Context::default().with_config("scopes", "read"),
        ] {
            let out = testing::request::<RequireClaims>(&c, Request::get("/"));
            let res = out.action.unwrap().into_respond().expect("refused");
            assert_eq!(res.status, 403);
            assert_eq!(res.into_body(), br#"{"error":"forbidden"}"#);
        }
    }
}

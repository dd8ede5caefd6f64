//! `reshape-json`: adapts a JSON body to another shape with declarative operations, on
//! the request, the response, or both.
//!
//! Config keys:
//! - `ops`: a JSON array of operations applied in order; locations are JSON Pointers:
//!   - `{"op": "rename", "from": "/user_name", "to": "/user/name"}` (alias `move`):
//!     moves a value, creating parent objects;
//!   - `{"op": "drop", "path": "/legacy"}`: removes a value;
//!   - `{"op": "default", "path": "/version", "value": 2}`: sets a value only if absent;
//!   - `{"op": "set", "path": "/api", "value": "v2"}`: sets a value always.
//! - `phases`: `request`, `response` or `both` (default `both`).
//!
//! A body that is not JSON is left untouched.

use palisade_sdk::{Action, Context, Error, Policy, Request, RequestHead, Response, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Move `from` to `to`.
    #[serde(alias = "move")]
    Rename {
        /// Source pointer.
        from: String,
        /// Destination pointer.
        to: String,
    },
    /// Remove `path`.
    Drop {
        /// Pointer.
        path: String,
    },
    /// Set `path` to `value` if absent.
    Default {
        /// Pointer.
        path: String,
        /// Value.
        value: Value,
    },
    /// Set `path` to `value`.
    Set {
        /// Pointer.
        path: String,
        /// Value.
        value: Value,
    },
}

/// Parses `ops` from config.
///
/// # Errors
///
/// When `ops` is missing or malformed.
pub fn ops(ctx: &Context) -> Result<Vec<Op>> {
    let json = ctx
        .config("ops")
        .ok_or_else(|| Error::msg("missing config `ops`"))?;
    serde_json::from_str(json).map_err(|e| Error::msg(format!("invalid `ops`: {e}")))
}

/// Applies `ops` to `doc`.
pub fn apply(ops: &[Op], doc: &mut Value) {
    for op in ops {
        match op {
            Op::Rename { from, to } => {
                if let Some(v) = take(doc, from) {
                    put(doc, to, v);
                }
            }
            Op::Drop { path } => {
                take(doc, path);
            }
            Op::Default { path, value } => {
                if doc.pointer(path).is_none() {
                    put(doc, path, value.clone());
                }
            }
            Op::Set { path, value } => put(doc, path, value.clone()),
        }
    }
}

fn split(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn take(doc: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, key) = split(pointer)?;
    match doc.pointer_mut(parent)? {
        Value::Object(map) => map.remove(&key),
        Value::Array(items) => key
            .parse::<usize>()
            .ok()
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    }
}

fn put(doc: &mut Value, pointer: &str, value: Value) {
    let Some((parent, key)) = split(pointer) else {
        return;
    };
    // Create missing parents as objects.
    let mut node = doc;
    for part in parent.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !node.is_object() && !node.is_array() {
            *node = Value::Object(Map::new());
        }
        node = match node {
            Value::Object(map) => map.entry(part).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => match part.parse::<usize>() {
                Ok(i) if i < items.len() => &mut items[i],
                _ => return,
            },
            _ => unreachable!("made an object above"),
        };
    }
    match node {
        Value::Object(map) => {
            map.insert(key, value);
        }
        Value::Array(items) => match key.as_str() {
            "-" => items.push(value),
            k => {
                if let Ok(i) = k.parse::<usize>() {
                    if i < items.len() {
                        items[i] = value;
                    } else if i == items.len() {
                        items.push(value);
                    }
                }
            }
        },
        other => {
            let mut map = Map::new();
            map.insert(key, value);
            *other = Value::Object(map);
        }
    }
}

fn wants(ctx: &Context, phase: &str) -> Result<bool> {
    match ctx.config("phases").unwrap_or("both") {
        "both" => Ok(true),
        p @ ("request" | "response") => Ok(p == phase),
        other => Err(Error::msg(format!("unknown phases `{other}`"))),
    }
}

/// The policy.
pub struct ReshapeJson;

impl Policy for ReshapeJson {
    fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        if wants(ctx, "request")? {
            let ops = ops(ctx)?;
            if let Ok(mut doc) = req.json::<Value>() {
                apply(&ops, &mut doc);
                req.set_json(&doc)?;
            }
        }
        Ok(Action::Continue(req))
    }

    fn on_response(
        ctx: &Context,
        _req: &RequestHead,
        mut res: Response,
    ) -> Result<Action<Response>> {
        if wants(ctx, "response")? {
            let ops = ops(ctx)?;
            if let Ok(mut doc) = res.json::<Value>() {
                apply(&ops, &mut doc);
                res.set_json(&doc)?;
            }
        }
        Ok(Action::Continue(res))
    }
}

palisade_sdk::export!(ReshapeJson);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn legacy_to_new_shape() {
        let ops: Vec<Op> = serde_json::from_value(json!([
            {"op": "rename", "from": "/user_name", "to": "/user/name"},
            {"op": "move", "from": "/user_mail", "to": "/user/email"},
            {"op": "drop", "path": "/legacy_flags"},
            {"op": "default", "path": "/version", "value": 2},
            {"op": "default", "path": "/kept", "value": "no"},
            {"op": "set", "path": "/api", "value": "v2"}
        ]))
        .unwrap();
        let mut doc =
            json!({"user_name": "jane", "user_mail": "j@x.io", "legacy_flags": [1], "kept": "yes"});
        apply(&ops, &mut doc);
        assert_eq!(
            doc,
            json!({"user": {"name": "jane", "email": "j@x.io"}, "version": 2, "kept": "yes", "api": "v2"})
        );
    }

    #[test]
    fn missing_source_is_a_no_op_and_arrays_work() {
        let ops: Vec<Op> = serde_json::from_value(json!([
            {"op": "rename", "from": "/nope", "to": "/x"},
            {"op": "drop", "path": "/items/0"},
            {"op": "set", "path": "/items/-", "value": 9}
        ]))
        .unwrap();
        let mut doc = json!({"items": [1, 2]});
        apply(&ops, &mut doc);
        assert_eq!(doc, json!({"items": [2, 9]}));
    }

    #[test]
    fn bad_ops_are_an_error() {
        let ctx = Context::default().with_config("ops", r#"[{"op": "explode"}]"#);
        assert!(ops(&ctx).is_err());
        assert!(ops(&Context::default()).is_err());
    }
}

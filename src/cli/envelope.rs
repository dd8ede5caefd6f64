//! The JSON envelope `palisade run` reads and writes.
//!
//! Request: `{"method","path","query","headers":{name: value | [values]},"body": <JSON>}`
//! (or `"body_text": "..."`, or `"body_base64": "..."`), with an optional `"context"`.
//! Response: `{"status","headers","body"}`, with optional `"request"` (the request head
//! the response phase sees) and `"context"`.

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use palisade_runtime::{Context, Headers, Identity, Request, Response};
use serde_json::{Map, Value, json};

/// Reads the body from whichever of `body`, `body_text`, `body_base64` is present.
fn body(obj: &Map<String, Value>) -> Result<Bytes> {
    let given: Vec<&str> = ["body", "body_text", "body_base64"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if given.len() > 1 {
        bail!(
            "give only one of `body`, `body_text`, `body_base64` (got {})",
            given.join(", ")
        );
    }
    Ok(match given.first() {
        None => Bytes::new(),
        Some(&"body") => Bytes::from(serde_json::to_vec(&obj["body"])?),
        Some(&"body_text") => match &obj["body_text"] {
            Value::String(s) => Bytes::from(s.clone().into_bytes()),
            _ => bail!("`body_text` must be a string"),
        },
        Some(_) => match &obj["body_base64"] {
            Value::String(s) => Bytes::from(
                BASE64
                    .decode(s)
                    .context("`body_base64` is not valid base64")?,
            ),
            _ => bail!("`body_base64` must be a string"),
        },
    })
}

fn string(obj: &Map<String, Value>, key: &str, default: &str) -> Result<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => bail!("`{key}` must be a string, got {other}"),
    }
}

fn headers(obj: &Map<String, Value>) -> Result<Headers> {
    let mut out = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                match value {
                    Value::String(v) => out.push((name.clone(), v.clone())),
                    Value::Array(vs) => {
                        for v in vs {
                            let v = v.as_str().with_context(|| {
                                format!("header `{name}`: values must be strings")
                            })?;
                            out.push((name.clone(), v.to_string()));
                        }
                    }
                    _ => bail!("header `{name}` must be a string or an array of strings"),
                }
            }
        }
        Some(_) => bail!("`headers` must be an object"),
    }
    Ok(out)
}

fn object(v: &Value, what: &str) -> Result<Map<String, Value>> {
    v.as_object()
        .cloned()
        .with_context(|| format!("{what} must be a JSON object"))
}

/// Parses a request envelope.
pub(crate) fn request(v: &Value) -> Result<Request> {
    let obj = object(v, "the request envelope")?;
    let method = string(&obj, "method", "GET")?;
    let (path, query) = match string(&obj, "path", "/")? {
        p if p.contains('?') && !obj.contains_key("query") => {
            let (p, q) = p.split_once('?').expect("contains ?");
            (p.to_string(), q.to_string())
        }
        p => (p, string(&obj, "query", "")?),
    };
    Ok(Request {
        method,
        path,
        query,
        headers: headers(&obj)?,
        body: body(&obj)?,
    })
}

/// Parses a response envelope; returns it with the request head it answers.
pub(crate) fn response(v: &Value) -> Result<(Request, Response)> {
    let obj = object(v, "the response envelope")?;
    let status = match obj.get("status") {
        None => 200,
        Some(s) => s
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .with_context(|| format!("`status` must be a number in 100..=599, got {s}"))?
            as u16,
    };
    let req = match obj.get("request") {
        Some(r) => request(r)?,
        None => Request::default(),
    };
    Ok((
        req,
        Response {
            status,
            headers: headers(&obj)?,
            body: body(&obj)?,
        },
    ))
}

/// Parses the optional `"context"` of an envelope.
pub(crate) fn context(v: &Value) -> Result<Context> {
    let Some(ctx) = v.get("context") else {
        return Ok(Context {
            tenant: "local".into(),
            route: "local".into(),
            correlation_id: "local".into(),
            ..Context::default()
        });
    };
    let obj = object(ctx, "`context`")?;
    let identity = match obj.get("identity") {
        None | Some(Value::Null) => None,
        Some(id) => {
            let id = object(id, "`context.identity`")?;
            Some(Identity {
                subject: string(&id, "subject", "")?,
                scopes: match id.get("scopes") {
                    None => Vec::new(),
                    Some(s) => serde_json::from_value(s.clone())
                        .context("`scopes` must be an array of strings")?,
                },
                claims: match id.get("claims") {
                    None => Vec::new(),
                    Some(c) => object(c, "`claims`")?.into_iter().collect(),
                },
            })
        }
    };
    Ok(Context {
        tenant: string(&obj, "tenant", "local")?,
        route: string(&obj, "route", "local")?,
        correlation_id: string(&obj, "correlation_id", "local")?,
        identity,
        config: Vec::new(),
        // No tenant data key here: `seal` answers that it is not granted.
        sealer: None,
    })
}

fn headers_json(headers: &Headers) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        match map.get_mut(name) {
            None => {
                map.insert(name.clone(), Value::String(value.clone()));
            }
            Some(Value::Array(vs)) => vs.push(Value::String(value.clone())),
            Some(first) => {
                let prev = first.take();
                *first = Value::Array(vec![prev, Value::String(value.clone())]);
            }
        }
    }
    Value::Object(map)
}

fn body_json(out: &mut Map<String, Value>, body: &[u8]) {
    if body.is_empty() {
        return;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        out.insert("body".into(), v);
    } else if let Ok(s) = std::str::from_utf8(body) {
        out.insert("body_text".into(), Value::String(s.to_string()));
    } else {
        out.insert("body_base64".into(), Value::String(BASE64.encode(body)));
    }
}

/// Writes a request as an envelope.
pub(crate) fn request_json(req: &Request) -> Value {
    let mut out = Map::new();
    out.insert("method".into(), json!(req.method));
    out.insert("path".into(), json!(req.path));
    out.insert("query".into(), json!(req.query));
    out.insert("headers".into(), headers_json(&req.headers));
    body_json(&mut out, &req.body);
    Value::Object(out)
}

/// Writes a response as an envelope.
pub(crate) fn response_json(res: &Response) -> Value {
    let mut out = Map::new();
    out.insert("status".into(), json!(res.status));
    out.insert("headers".into(), headers_json(&res.headers));
    body_json(&mut out, &res.body);
    Value::Object(out)
}

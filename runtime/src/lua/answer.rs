//! What a handler returned, read into host values under the output caps before the
//! host copies anything large (catalogue item 52).

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use super::convert::{Budget, headers_from_lua, lua_to_json, script};
use super::sandbox::reply_marker;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::{
    Headers, Response, check_head, check_headers, check_output, check_status, head_too_large,
    headers_size,
};

/// What a handler returned, converted to host values while its VM was still held.
pub(super) enum Answer {
    Unchanged,
    Continue(Changes),
    Respond(Response),
}

/// The fields a handler left on the message it returned (`None`: unchanged).
pub(super) struct Changes {
    pub(super) method: Option<String>,
    pub(super) path: Option<String>,
    pub(super) query: Option<String>,
    pub(super) status: Option<u16>,
    pub(super) headers: Option<Headers>,
    pub(super) body: Option<Bytes>,
}

/// Converts what a handler returned.
pub(super) fn answer(lua: &Lua, out: Value, original: &Bytes, limits: &Limits) -> Result<Answer> {
    let t = match out {
        Value::Nil => return Ok(Answer::Unchanged),
        Value::Table(t) => t,
        other => {
            return Err(Error::InvalidOutput(format!(
                "a handler must return a table or nil, not a {}",
                other.type_name()
            )));
        }
    };
    let body = new_body(lua, &t, original, limits.output_limit())?;
    let body_len = body.as_ref().map_or(0, |b| b.len() as u64);
    if t.raw_get::<Value>(reply_marker())
        .map_err(script)?
        .as_boolean()
        == Some(true)
    {
        let status = t.raw_get::<u16>("status").map_err(|_| {
            Error::InvalidOutput("reply status must be a number in 100..=599".into())
        })?;
        check_status(status)?;
        let headers = headers(&t, limits)?.unwrap_or_default();
        check_output(headers_size(&headers) + body_len, limits.output_limit())?;
        return Ok(Answer::Respond(Response {
            status,
            headers,
            body: body.unwrap_or_default(),
        }));
    }
    let status = match t.raw_get::<Value>("status").map_err(script)? {
        Value::Nil => None,
        Value::Integer(i) => Some(
            u16::try_from(i)
                .map_err(|_| Error::InvalidOutput(format!("status {i} is outside 100..=599")))?,
        ),
        Value::Number(n) if n.fract() == 0.0 && (0.0..=65535.0).contains(&n) => Some(n as u16),
        other => {
            return Err(Error::InvalidOutput(format!(
                "`status` is a {}",
                other.type_name()
            )));
        }
    };
    if let Some(s) = status {
        check_status(s)?;
    }
    let method = text(&t, "method", limits)?;
    let path = text(&t, "path", limits)?;
    let query = text(&t, "query", limits)?;
    let start = [&method, &path, &query]
        .iter()
        .map(|s| s.as_ref().map_or(0, |s| s.len() as u64))
        .sum::<u64>();
    let headers = headers(&t, limits)?;
    let head = headers.as_deref().unwrap_or_default();
    check_head(start, head, limits)?;
    check_output(start + headers_size(head) + body_len, limits.output_limit())?;
    Ok(Answer::Continue(Changes {
        method,
        path,
        query,
        status,
        headers,
        body,
    }))
}

/// A returned string field of the head, refused before copying when it alone is over
/// the head cap.
fn text(t: &Table, name: &str, limits: &Limits) -> Result<Option<String>> {
    match t.raw_get::<Value>(name).map_err(script)? {
        Value::Nil => Ok(None),
        Value::String(s) => {
            let len = s.as_bytes().len() as u64;
            if len > limits.head_limit() {
                return Err(head_too_large(0, len, limits));
            }
            Ok(Some(
                s.to_str()
                    .map_err(|_| Error::InvalidOutput(format!("`{name}` is not UTF-8")))?
                    .to_string(),
            ))
        }
        other => Err(Error::InvalidOutput(format!(
            "`{name}` is a {}",
            other.type_name()
        ))),
    }
}

/// The returned `headers`, read within the head caps and checked as HTTP.
fn headers(t: &Table, limits: &Limits) -> Result<Option<Headers>> {
    match t.raw_get::<Value>("headers").map_err(script)? {
        Value::Nil => Ok(None),
        value => {
            let headers = headers_from_lua(&value, limits)?;
            check_headers(&headers)?;
            Ok(Some(headers))
        }
    }
}

/// The body to send on: `raw_body` if the script set it to new bytes, else `body`
/// re-encoded as JSON if it differs from the original document, else none (unchanged).
fn new_body(lua: &Lua, t: &Table, original: &Bytes, max_output: u64) -> Result<Option<Bytes>> {
    let mut budget = Budget::new(max_output);
    match t.raw_get::<Value>("raw_body").map_err(script)? {
        Value::String(s) if s.as_bytes()[..] != original[..] => {
            let len = s.as_bytes().len() as u64;
            check_output(len, max_output)?;
            return Ok(Some(Bytes::copy_from_slice(&s.as_bytes())));
        }
        Value::Nil | Value::String(_) => {}
        other => {
            return Err(Error::InvalidOutput(format!(
                "`raw_body` is a {}",
                other.type_name()
            )));
        }
    }
    let body = t.raw_get::<Value>("body").map_err(script)?;
    if body.is_nil() {
        return Ok(None);
    }
    let json = lua_to_json(lua, &body, &mut budget, 0)?;
    if serde_json::from_slice::<serde_json::Value>(original)
        .ok()
        .as_ref()
        == Some(&json)
    {
        return Ok(None);
    }
    Ok(Some(Bytes::from(
        serde_json::to_vec(&json).expect("a Value serializes"),
    )))
}

//! JSON Schema validation of request and response bodies, per route (`[route.schema]`).
//!
//! Schemas come from files (JSON Schema draft 2020-12 unless a schema's `$schema` names
//! another draft), with `$ref` across the files of the same directory and nothing else:
//! no network, no file outside that directory. They are compiled once when the routes are
//! built (start and reload) with `jsonschema`, whose `pattern` keyword runs on the
//! linear-time `regex` engine with size caps. An OpenAPI 3.x document can supply the
//! schemas instead, per operation (method and path template), see [`openapi`].
//!
//! A request body that fails is refused (400 `schema_invalid`) with the JSON pointers and
//! keywords that failed, never a value, before any request policy runs. A response body
//! that fails is 502 `response_schema_invalid` (`response_fail = "closed"`, the default) or
//! passed on, counted and recorded (`"report"`). Audit blocks record where the body
//! failed as normalized paths whose data-like keys are hidden, never values.

mod config;
mod json;
pub(crate) mod openapi;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

pub use self::config::compile;
pub use self::config::{Config, MAX_SCHEMA_FILE, ResponseFail};
use self::openapi::Operations;

/// One place a body failed its schema: a JSON pointer (RFC 6901) into the body and the
/// schema keyword that failed. Never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where in the body, as a JSON pointer (`/items/0/qty`; empty for the whole body).
    pub pointer: String,
    /// The keyword that failed (`minimum`, `required`, `type`, ...).
    pub keyword: String,
}

/// Which body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request's.
    Request,
    /// The response's.
    Response,
}

impl Side {
    /// `request` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// A compiled schema.
#[derive(Clone)]
pub(crate) struct Schema(Arc<jsonschema::Validator>);

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// What a body must be: a schema, or nothing (any body passes).
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub(crate) schema: Option<Schema>,
    /// Whether an empty body is refused.
    pub(crate) required: bool,
}

/// A route's schemas, compiled ([`compile`]).
#[derive(Debug, Clone)]
pub struct Schemas {
    source: Source,
    /// What a response that fails does.
    pub response_fail: ResponseFail,
}

#[derive(Debug, Clone)]
enum Source {
    /// One schema for every request, one for every response.
    Fixed {
        request: Option<Expect>,
        response: Option<Schema>,
    },
    /// Per operation of an OpenAPI document.
    OpenApi(Operations),
}

/// Why a body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    /// Not JSON (or nested deeper than `serde_json` reads).
    NotJson,
    /// The route's OpenAPI document has no operation for the method and path.
    NoOperation,
    /// Empty where the schema requires a body.
    Missing,
    /// These places failed.
    Failed(Vec<Failure>),
}

impl Schemas {
    /// Whether the response must be read whole to be validated.
    pub fn reads_response(&self) -> bool {
        match &self.source {
            Source::Fixed { response, .. } => response.is_some(),
            Source::OpenApi(ops) => ops.has_responses(),
        }
    }

    /// Validates a request body of `method path`.
    ///
    /// # Errors
    ///
    /// [`Invalid`]: why, and where (the first place that fails).
    pub fn request(&self, method: &str, path: &str, body: &Bytes) -> Result<(), Invalid> {
        let expect = match &self.source {
            Source::Fixed { request: None, .. } => return Ok(()),
            // Methods that carry no body by convention pass without one.
            Source::Fixed { .. }
                if matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE")
                    && body.iter().all(u8::is_ascii_whitespace) =>
            {
                return Ok(());
            }
            Source::Fixed {
                request: Some(e), ..
            } => e,
            Source::OpenApi(ops) => ops.request(method, path).ok_or(Invalid::NoOperation)?,
        };
        check(expect, body)
    }

    /// Validates the body of a response with `status` to `method path`.
    ///
    /// # Errors
    ///
    /// [`Invalid`]: why, and where (the first place that fails).
    pub fn response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Bytes,
    ) -> Result<(), Invalid> {
        let schema = match &self.source {
            // The upstream's errors are not what the schema describes.
            Source::Fixed { response, .. } if (200..300).contains(&status) => response.clone(),
            Source::Fixed { .. } => None,
            Source::OpenApi(ops) => ops.response(method, path, status),
        };
        let Some(schema) = schema else { return Ok(()) };
        check(
            &Expect {
                schema: Some(schema),
                required: false,
            },
            body,
        )
    }
}

fn check(expect: &Expect, body: &Bytes) -> Result<(), Invalid> {
    let Some(schema) = &expect.schema else {
        return Ok(());
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return if expect.required {
            Err(Invalid::Missing)
        } else {
            Ok(())
        };
    }
    // One reading for everyone: a key given twice is read one way here (the last wins)
    // and may be read the other way by a policy or the upstream.
    if !json::unambiguous(body) {
        return Err(Invalid::NotJson);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| Invalid::NotJson)?;
    // The first failure only: collecting every failure of a hostile body (a million
    // array elements of the wrong type) would cost memory in proportion to it.
    schema.0.validate(&doc).map_err(|e| {
        Invalid::Failed(vec![Failure {
            pointer: e.instance_path().as_str().to_string(),
            keyword: e.kind().keyword().to_string(),
        }])
    })
}

impl Invalid {
    /// The failures (none for a body that is missing, not JSON or has no operation).
    pub fn failures(&self) -> &[Failure] {
        match self {
            Invalid::Failed(f) => f,
            _ => &[],
        }
    }

    /// What the audit block records (`detail.schema`): the side, why, and where as
    /// normalized paths with data-like keys hidden (keys are data too), never values.
    pub fn audit(&self, side: Side) -> Value {
        let reason = match self {
            Invalid::NotJson => "not_json",
            Invalid::NoOperation => "no_operation",
            Invalid::Missing => "missing",
            Invalid::Failed(_) => "failed",
        };
        let failures: Vec<Value> = self
            .failures()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": audit_path(&f.pointer),
                    "keyword": f.keyword,
                })
            })
            .collect();
        serde_json::json!({
            "side": side.as_str(),
            "reason": reason,
            "failures": failures,
        })
    }
}

/// A JSON pointer as a normalized path fit for an audit record (`/by_ssn/219-09-9999` ->
/// `$['by_ssn'][*]`): indices stay, names that do not look like field names are hidden.
fn audit_path(pointer: &str) -> String {
    let mut path = String::from("$");
    for segment in pointer.split('/').skip(1) {
        let name = segment.replace("~1", "/").replace("~0", "~");
        match name.parse::<usize>() {
            Ok(i) if name.len() <= 6 && (name == "0" || !name.starts_with('0')) => {
                palisade_jsonpath::push_index(&mut path, i);
            }
            _ => palisade_jsonpath::push_audit_name(&mut path, &name),
        }
    }
    path
}

/// The 400 body's `errors`: pointers and keywords of the caller's own body.
pub(crate) fn public_errors(failures: &[Failure]) -> Value {
    failures
        .iter()
        .map(|f| serde_json::json!({"pointer": f.pointer, "keyword": f.keyword}))
        .collect()
}

#[cfg(test)]
mod tests;

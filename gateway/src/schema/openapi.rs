//! Schemas from an OpenAPI 3.x document (JSON), per operation: the method and path
//! template (`/orders/{id}`) select the operation; its `requestBody` (`required` decides
//! whether an empty body passes) and its `responses` (exact status, then `2XX`-style
//! ranges, then `default`) give the schemas of `application/json` (or a `+json` type).
//! Concrete paths match before templated ones, as OpenAPI says. Paths are the upstream's:
//! a route that strips its prefix has it stripped before matching.
//!
//! Schemas are compiled as JSON Schema 2020-12 (OpenAPI 3.1's dialect); `$ref`s resolve
//! inside the document and to files beside it. OpenAPI 3.0's `nullable` is not a 2020-12
//! keyword and is ignored (`null` is then refused unless the schema's `type` lists it).

use std::path::Path;

use serde_json::Value;

use super::config::{build, read};
use super::{Expect, Schema};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The operations of one document, most specific first.
#[derive(Debug, Clone)]
pub(crate) struct Operations {
    ops: Vec<Operation>,
    strip: Option<String>,
}

#[derive(Debug, Clone)]
struct Operation {
    method: String,
    template: Vec<Segment>,
    request: Expect,
    responses: Vec<(Status, Schema)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `prefix{name}suffix`: a non-empty value between them.
    Param {
        prefix: String,
        suffix: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Code(u16),
    /// `2XX`: the hundreds digit.
    Range(u16),
    Default,
}

impl Operations {
    /// Reads and compiles the document at `path`.
    ///
    /// # Errors
    ///
    /// A message naming the operation whose schema does not compile, a path template
    /// with two parameters in one segment, or a document that is not OpenAPI 3.x JSON.
    pub(crate) fn load(path: &Path, strip: Option<&str>) -> Result<Self, String> {
        let doc = read(path)?;
        let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
        if !version.starts_with("3.") {
            return Err("not an OpenAPI 3.x document (no `openapi: 3.x`)".into());
        }
        let name = path
            .file_name()
            .ok_or("not a file")?
            .to_string_lossy()
            .into_owned();
        let compile = |pointer: String| -> Result<Schema, String> {
            let wrapper = serde_json::json!({
                "$ref": format!("{}#{pointer}", super::config::encode(&name))
            });
            // The wrapper stands beside the document, so the reference reads it.
            build(
                &wrapper,
                &path.with_file_name(".palisade-openapi-operation"),
            )
            .map_err(|e| format!("{pointer}: {e}"))
        };
        let mut ops = Vec::new();
        let paths = doc.get("paths").and_then(Value::as_object);
        for (template, item) in paths.into_iter().flatten() {
            let segments = parse_template(template)?;
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let base = format!("/paths/{}/{method}", escape(template));
                let request = match op.get("requestBody") {
                    None => Expect {
                        schema: None,
                        required: false,
                    },
                    Some(body) => Expect {
                        schema: json_media(body.get("content"))
                            .map(|m| {
                                compile(format!("{base}/requestBody/content/{}/schema", escape(m)))
                            })
                            .transpose()?,
                        required: body
                            .get("required")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    },
                };
                let mut responses = Vec::new();
                for (code, response) in op
                    .get("responses")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let Some(status) = parse_status(code) else {
                        return Err(format!("{base}: response `{code}` is not a status"));
                    };
                    if let Some(m) = json_media(response.get("content")) {
                        let pointer = format!(
                            "{base}/responses/{}/content/{}/schema",
                            escape(code),
                            escape(m)
                        );
                        responses.push((status, compile(pointer)?));
                    }
                }
                responses.sort_by_key(|(s, _)| *s);
                ops.push(Operation {
                    method: method.to_ascii_uppercase(),
                    template: segments.clone(),
                    request,
                    responses,
                });
            }
        }
        // Concrete before templated, then longer before shorter.
        ops.sort_by_key(|o| {
            let params = o
                .template
                .iter()
                .filter(|s| matches!(s, Segment::Param { .. }))
                .count();
            (params, std::cmp::Reverse(o.template.len()))
        });
        Ok(Operations {
            ops,
            strip: strip.map(str::to_string),
        })
    }

    /// Whether any operation has a response schema.
    pub(crate) fn has_responses(&self) -> bool {
        self.ops.iter().any(|o| !o.responses.is_empty())
    }

    fn find(&self, method: &str, path: &str) -> Option<&Operation> {
        let path = match &self.strip {
            Some(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some("") => "/",
                Some(rest) if rest.starts_with('/') => rest,
                _ => path,
            },
            None => path,
        };
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        self.ops
            .iter()
            .find(|o| o.method == method && matches(&o.template, &segments))
    }

    /// What the request body of `method path` must be; `None` when no operation matches.
    pub(crate) fn request(&self, method: &str, path: &str) -> Option<&Expect> {
        self.find(method, path).map(|o| &o.request)
    }

    /// The schema of the response with `status` to `method path`, if the document has one.
    pub(crate) fn response(&self, method: &str, path: &str, status: u16) -> Option<Schema> {
        let op = self.find(method, path)?;
        op.responses
            .iter()
            .find(|(s, _)| match s {
                Status::Code(c) => *c == status,
                Status::Range(h) => *h == status / 100,
                Status::Default => true,
            })
            .map(|(_, schema)| schema.clone())
    }
}

fn matches(template: &[Segment], segments: &[&str]) -> bool {
    template.len() == segments.len()
        && template.iter().zip(segments).all(|(t, s)| match t {
            Segment::Literal(l) => l == s,
            Segment::Param { prefix, suffix } => {
                s.len() > prefix.len() + suffix.len()
                    && s.starts_with(prefix.as_str())
                    && s.ends_with(suffix.as_str())
            }
        })
}

fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err(format!("path `{template}` does not start with `/`"));
    };
    rest.split('/')
        .map(|s| match (s.find('{'), s.rfind('}')) {
            (None, None) => Ok(Segment::Literal(s.to_string())),
            (Some(open), Some(close))
                if open < close && s[open + 1..close].find(['{', '}']).is_none() =>
            {
                Ok(Segment::Param {
                    prefix: s[..open].to_string(),
                    suffix: s[close + 1..].to_string(),
                })
            }
            _ => Err(format!(
                "path `{template}`: one parameter per segment is supported"
            )),
        })
        .collect()
}

fn parse_status(code: &str) -> Option<Status> {
    if code == "default" {
        return Some(Status::Default);
    }
    match code.as_bytes() {
        [h @ b'1'..=b'5', b'X' | b'x', b'X' | b'x'] => Some(Status::Range(u16::from(h - b'0'))),
        _ => code
            .parse()
            .ok()
            .filter(|c| (100..600).contains(c))
            .map(Status::Code),
    }
}

/// The JSON media type of a `content` map: `application/json`, else the first `+json`.
fn json_media(content: Option<&Value>) -> Option<&str> {
    let content = content?.as_object()?;
    if content.contains_key("application/json") {
        return Some("application/json");
    }
    content.keys().map(String::as_str).find(|m| {
        m.split(';')
            .next()
            .is_some_and(|t| t.trim().ends_with("+json"))
    })
}

/// A JSON pointer token (RFC 6901) inside a URI fragment.
fn escape(token: &str) -> String {
    super::config::encode_fragment(&token.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_statuses_and_media() {
        let t = parse_template("/orders/{id}/lines/v{n}.json").unwrap();
        assert!(matches(&t, &["orders", "42", "lines", "v7.json"]));
        assert!(!matches(&t, &["orders", "42", "lines", "v.json"]));
        assert!(!matches(&t, &["orders", "42", "lines"]));
        assert!(parse_template("/a/{x}{y}").is_err());
        assert!(parse_template("a").is_err());
        assert_eq!(parse_status("2XX"), Some(Status::Range(2)));
        assert_eq!(parse_status("404"), Some(Status::Code(404)));
        assert_eq!(parse_status("default"), Some(Status::Default));
        assert_eq!(parse_status("99"), None);
        let c = serde_json::json!({"application/problem+json": {}});
        assert_eq!(json_media(Some(&c)), Some("application/problem+json"));
        assert_eq!(escape("/a/{b}"), "~1a~1%7Bb%7D");
    }
}

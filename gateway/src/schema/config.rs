//! `[route.schema]` and compiling it: schema files, the retriever that reads `$ref`s from
//! the schema's own directory only, the pattern engine's limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::{PatternOptions, Retrieve, Uri};
use serde::Deserialize;
use serde_json::Value;

use super::openapi::Operations;
use super::{Expect, Schema, Schemas, Source};

/// The largest schema or OpenAPI file read, in bytes.
pub const MAX_SCHEMA_FILE: u64 = 4 << 20;
/// The compiled size cap of one `pattern` regex, in bytes.
const MAX_PATTERN_SIZE: usize = 1 << 20;

/// `[route.schema]`: what the route's bodies must be. Either `request` and/or `response`
/// (schema files), or `openapi` (a document whose operations supply them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The JSON Schema every request body must satisfy.
    pub request: Option<PathBuf>,
    /// Whether an empty request body is refused when `request` is set. By default `true`.
    #[serde(default = "yes")]
    pub request_required: bool,
    /// The JSON Schema every response body must satisfy.
    pub response: Option<PathBuf>,
    /// An OpenAPI 3.x document (JSON): each operation's `requestBody` and `responses`
    /// schemas for `application/json`.
    pub openapi: Option<PathBuf>,
    /// What a response that fails does. By default `closed`.
    #[serde(default)]
    pub response_fail: ResponseFail,
}

fn yes() -> bool {
    true
}

/// `response_fail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFail {
    /// 502 `response_schema_invalid`; the body does not leave.
    #[default]
    Closed,
    /// The response is sent; the failure is counted and recorded in the audit block.
    Report,
}

impl Config {
    /// Makes the files relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &Path) {
        for p in [&mut self.request, &mut self.response, &mut self.openapi]
            .into_iter()
            .flatten()
        {
            *p = crate::config::de::rebase(base, p);
        }
    }
}

/// Compiles a route's `[route.schema]`; `strip` is the prefix the route strips (OpenAPI
/// paths are the upstream's).
///
/// # Errors
///
/// `(field, message)` for a file that cannot be read, is not JSON or not a valid schema,
/// a `$ref` outside the schema's directory, or both `openapi` and a schema file.
pub fn compile(config: &Config, strip: Option<&str>) -> Result<Schemas, (&'static str, String)> {
    let source = match (&config.openapi, &config.request, &config.response) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err((
                "openapi",
                "set either `openapi` or `request`/`response` schema files, not both".into(),
            ));
        }
        (Some(doc), None, None) => Source::OpenApi(
            Operations::load(doc, strip)
                .map_err(|e| ("openapi", format!("{}: {e}", doc.display())))?,
        ),
        (None, request, response) => Source::Fixed {
            request: request
                .as_deref()
                .map(|p| {
                    Ok::<_, (&'static str, String)>(Expect {
                        schema: Some(file(p).map_err(|e| ("request", e))?),
                        required: config.request_required,
                    })
                })
                .transpose()?,
            response: response
                .as_deref()
                .map(|p| file(p).map_err(|e| ("response", e)))
                .transpose()?,
        },
    };
    Ok(Schemas {
        source,
        response_fail: config.response_fail,
    })
}

/// Compiles the schema in `path`.
fn file(path: &Path) -> Result<Schema, String> {
    let doc = read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    build(&doc, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Compiles `schema`, found at `at`: relative `$ref`s resolve against it.
pub(super) fn build(schema: &Value, at: &Path) -> Result<Schema, String> {
    let dir = at
        .parent()
        .ok_or("not in a directory")?
        .canonicalize()
        .map_err(|e| e.to_string())?;
    let name = at.file_name().ok_or("not a file")?.to_string_lossy();
    let mut base = String::from("file://");
    for segment in dir.iter().skip(1) {
        base.push('/');
        base.push_str(&encode(&segment.to_string_lossy()));
    }
    base.push('/');
    base.push_str(&encode(&name));
    // Draft 2020-12 unless the schema's `$schema` names another.
    jsonschema::options()
        .with_base_uri(base)
        .with_retriever(Directory(dir))
        .with_pattern_options(
            PatternOptions::regex()
                .size_limit(MAX_PATTERN_SIZE)
                .dfa_size_limit(MAX_PATTERN_SIZE),
        )
        .build(schema)
        .map(|v| Schema(Arc::new(v)))
        .map_err(|e| e.to_string())
}

/// A file name as a URI path segment.
pub(super) fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What a URI fragment cannot hold as it is (RFC 3986 `fragment`).
const FRAGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A JSON pointer as a URI fragment.
pub(super) fn encode_fragment(pointer: &str) -> String {
    percent_encoding::utf8_percent_encode(pointer, FRAGMENT).to_string()
}

/// Reads a JSON file of at most [`MAX_SCHEMA_FILE`] bytes.
pub(super) fn read(path: &Path) -> Result<Value, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    f.take(MAX_SCHEMA_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SCHEMA_FILE {
        return Err(format!("larger than {MAX_SCHEMA_FILE} bytes"));
    }
    serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))
}

/// Retrieves `$ref`s: `file:` URIs naming a file directly in the schema's directory.
/// Anything else (another scheme, a subdirectory, `..`, a link out of the directory) is
/// refused, so a schema can neither reach the network nor read the host's files.
struct Directory(PathBuf);

impl Retrieve for Directory {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.scheme().as_str() != "file" {
            return Err(
                format!("`{}`: only files beside the schema are read", uri.as_str()).into(),
            );
        }
        let path = percent_decode(uri.path().as_str())?;
        let path = Path::new(&path);
        let beside = path
            .canonicalize()
            .ok()
            .filter(|p| p.parent() == Some(self.0.as_path()) && p.is_file());
        let Some(file) = beside else {
            return Err(format!("`{}` is not a file beside the schema", uri.as_str()).into());
        };
        Ok(read(&file)?)
    }
}

fn percent_decode(path: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map(|p| p.into_owned())
        .map_err(|_| "not UTF-8".to_string())
}

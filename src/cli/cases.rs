//! The case file `palisade test` runs (docs/cli.md#case-files): each case gives an input
//! envelope (the one `palisade run` reads), config, limits, and what must come out.
//! Every expectation is optional; a case with none passes when the policy does not fail.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use palisade_runtime::{Error, Invocation, Limits, Policy};
use serde::Deserialize;
use serde_json::{Value, json};
use serde_json_path::JsonPath;

use super::envelope;

/// A case file: `{"cases": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseFile {
    /// What the file is about (shown, not checked).
    #[serde(default)]
    pub(crate) description: Option<String>,
    pub(crate) cases: Vec<Case>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    #[default]
    Request,
    Response,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    #[serde(default)]
    phase: Phase,
    /// Config entries; a value that is not a string is passed as its JSON text.
    #[serde(default)]
    config: BTreeMap<String, Value>,
    /// The envelope, with its optional `context`.
    #[serde(default = "empty_object")]
    input: Value,
    #[serde(default)]
    limits: CaseLimits,
    #[serde(default)]
    expect: Expect,
}

fn empty_object() -> Value {
    json!({})
}

/// Limits for one case; the defaults are `palisade run`'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseLimits {
    /// A number, or `"unlimited"`.
    fuel: Option<Value>,
    memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Continue,
    Respond,
    Error,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Respond => "respond",
            Action::Error => "error",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    action: Option<Action>,
    /// `palisade run`'s exit code for the outcome: 0 success, 3 limit, 4 guest failed...
    exit_code: Option<u8>,
    /// The error's kind (`fuel_exhausted`, `deadline`, `guest_error`, `script_error`...)
    /// and a part of its message.
    error: Option<ExpectError>,
    status: Option<u16>,
    method: Option<String>,
    path: Option<String>,
    query: Option<String>,
    /// Name (any case) -> value, list of values, or `null` for absent.
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    /// The body, parsed as JSON, equals this (`null` included).
    #[serde(default, deserialize_with = "present")]
    body: Option<Value>,
    /// The body's text equals this.
    body_text: Option<String>,
    /// JSONPath (RFC 9535) -> value: the path selects at least one node, each equal to it.
    #[serde(default)]
    json: BTreeMap<String, Value>,
    /// JSONPaths that must select nothing.
    #[serde(default)]
    json_absent: Vec<String>,
    /// The redacted paths reported, in any order.
    redacted: Option<Vec<String>>,
    /// Log lines that must appear: a message, or `{"level", "message"}`.
    #[serde(default)]
    logs: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectError {
    kind: Option<String>,
    message_contains: Option<String>,
}

/// What one case did.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) name: String,
    /// Empty when the case passed.
    pub(crate) failures: Vec<String>,
    /// `palisade run`'s report of the invocation (action, envelope, logs, stats).
    pub(crate) report: Value,
}

/// Reads and validates a case file.
pub(crate) fn load(path: &std::path::Path) -> Result<CaseFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: CaseFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid case file", path.display()))?;
    if file.cases.is_empty() {
        bail!("{} has no cases", path.display());
    }
    for case in &file.cases {
        let check = |p: &String| {
            JsonPath::parse(p)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("case `{}`: `{p}` is not a JSONPath: {e}", case.name))
        };
        case.expect.json.keys().try_for_each(check)?;
        case.expect.json_absent.iter().try_for_each(check)?;
    }
    Ok(file)
}

/// Runs one case against `policy`.
///
/// # Errors
///
/// A malformed envelope or limit (the case file's fault, exit 2).
pub(crate) fn run(policy: &Policy, case: &Case) -> Result<Outcome> {
    let what = || format!("case `{}`", case.name);
    let policy = policy.with_limits(limits(&case.limits).with_context(what)?);
    let mut ctx = envelope::context(&case.input).with_context(what)?;
    ctx.config = case
        .config
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let (report, error) = match case.phase {
        Phase::Request => {
            let req = envelope::request(&case.input).with_context(what)?;
            report(
                policy.on_request(&ctx, req),
                "request",
                envelope::request_json,
            )
        }
        Phase::Response => {
            let (req, res) = envelope::response(&case.input).with_context(what)?;
            report(
                policy.on_response(&ctx, &req, res),
                "response",
                envelope::response_json,
            )
        }
    };
    let failures = check(&case.expect, &report, error.as_ref());
    Ok(Outcome {
        name: case.name.clone(),
        failures,
        report,
    })
}

fn limits(l: &CaseLimits) -> Result<Limits> {
    let fuel = match &l.fuel {
        None => None,
        Some(Value::String(s)) if s == "unlimited" => Some(None),
        Some(v) => Some(Some(v.as_u64().with_context(|| {
            format!("`limits.fuel` must be a number or \"unlimited\", got {v}")
        })?)),
    };
    super::run::limits_of(fuel, l.memory_bytes, l.timeout_ms, "`limits.timeout_ms`")
}

/// `palisade run`'s JSON report of an invocation with the exit code it would give.
fn report<T>(inv: Invocation<T>, noun: &str, to_json: fn(&T) -> Value) -> (Value, Option<Error>) {
    let (mut out, error) = super::run::report(inv, noun, to_json);
    let exit_code = error.as_ref().map_or(0, |e| e.class().exit_code());
    out["exit_code"] = json!(exit_code);
    (out, error)
}

/// Every way `report` differs from `expect`.
fn check(expect: &Expect, report: &Value, error: Option<&Error>) -> Vec<String> {
    let mut fails = Vec::new();
    let action = report["action"].as_str().unwrap_or("");
    let exit_code = report["exit_code"].as_u64().unwrap_or(0);
    let wants_error = expect.action == Some(Action::Error)
        || expect.error.is_some()
        || expect.exit_code.is_some_and(|c| c != 0);
    match error {
        Some(e) if !wants_error => {
            fails.push(format!("the policy failed: {e} (exit code {exit_code})"))
        }
        _ => {}
    }
    if let Some(a) = expect.action {
        if a.as_str() != action {
            fails.push(format!("action: expected {}, got {action}", a.as_str()));
        }
    } else if wants_error && error.is_none() {
        fails.push(format!("expected a failure, got {action}"));
    }
    if let Some(code) = expect.exit_code
        && u64::from(code) != exit_code
    {
        fails.push(format!("exit code: expected {code}, got {exit_code}"));
    }
    if let Some(want) = &expect.error {
        let kind = report["error"]["kind"].as_str().unwrap_or("");
        let message = report["error"]["message"].as_str().unwrap_or("");
        if let Some(k) = &want.kind
            && k != kind
        {
            fails.push(format!("error kind: expected {k}, got {}", or_none(kind)));
        }
        if let Some(m) = &want.message_contains
            && !message.contains(m.as_str())
        {
            fails.push(format!(
                "error message: expected it to contain {m:?}, got {message:?}"
            ));
        }
    }
    // The envelope that came out: the request or response that continues, or the reply.
    let envelope = ["request", "response"]
        .iter()
        .find_map(|k| report.get(*k))
        .cloned()
        .unwrap_or(Value::Null);
    let field = |name: &str, want: &Option<String>, fails: &mut Vec<String>| {
        if let Some(w) = want {
            let got = envelope[name].as_str().unwrap_or("");
            if w != got {
                fails.push(format!("{name}: expected {w:?}, got {got:?}"));
            }
        }
    };
    field("method", &expect.method, &mut fails);
    field("path", &expect.path, &mut fails);
    field("query", &expect.query, &mut fails);
    if let Some(s) = expect.status
        && envelope["status"].as_u64() != Some(u64::from(s))
    {
        fails.push(format!("status: expected {s}, got {}", envelope["status"]));
    }
    for (name, want) in &expect.headers {
        let got = header_values(&envelope["headers"], name);
        let want_values: Option<Vec<String>> = match want {
            Value::Null => None,
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(vs) => Some(
                vs.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                    .collect(),
            ),
            other => Some(vec![other.to_string()]),
        };
        match want_values {
            None if !got.is_empty() => {
                fails.push(format!("header {name}: expected absent, got {got:?}"))
            }
            Some(w) if w != got => {
                fails.push(format!("header {name}: expected {w:?}, got {got:?}"))
            }
            _ => {}
        }
    }
    let body = envelope.get("body");
    if let Some(want) = &expect.body
        && body != Some(want)
    {
        fails.push(format!(
            "body: expected {want}, got {}",
            body.map_or_else(|| describe_body(&envelope), Value::to_string)
        ));
    }
    if let Some(want) = &expect.body_text {
        let got = match (envelope.get("body_text"), body) {
            (Some(Value::String(t)), _) => t.clone(),
            (_, Some(b)) => b.to_string(),
            _ => String::new(),
        };
        if &got != want {
            fails.push(format!("body_text: expected {want:?}, got {got:?}"));
        }
    }
    for (path, want) in &expect.json {
        let nodes = select(path, body);
        if nodes.is_empty() {
            fails.push(format!("{path}: selects nothing (expected {want})"));
        }
        for node in nodes.iter().filter(|n| **n != want) {
            fails.push(format!("{path}: expected {want}, got {node}"));
        }
    }
    for path in &expect.json_absent {
        let nodes = select(path, body);
        if !nodes.is_empty() {
            fails.push(format!("{path}: expected nothing, selects {}", nodes.len()));
        }
    }
    if let Some(want) = &expect.redacted {
        let mut want = want.clone();
        let mut got: Vec<String> = report["redacted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        want.sort();
        got.sort();
        if want != got {
            fails.push(format!("redacted: expected {want:?}, got {got:?}"));
        }
    }
    let logs = report["logs"].as_array().cloned().unwrap_or_default();
    for want in &expect.logs {
        let (level, message) = match want {
            Value::String(m) => (None, m.as_str()),
            other => (
                other["level"].as_str(),
                other["message"].as_str().unwrap_or(""),
            ),
        };
        let found = logs.iter().any(|l| {
            l["message"].as_str() == Some(message)
                && level.is_none_or(|lv| l["level"].as_str() == Some(lv))
        });
        if !found {
            fails.push(format!("logs: no line {want}"));
        }
    }
    fails
}

/// A key that is present is `Some`, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

fn describe_body(envelope: &Value) -> String {
    match (envelope.get("body_text"), envelope.get("body_base64")) {
        (Some(t), _) => format!("text {t}"),
        (_, Some(_)) => "binary".to_string(),
        _ => "no body".to_string(),
    }
}

fn header_values(headers: &Value, name: &str) -> Vec<String> {
    let Some(map) = headers.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| match v {
            Value::Array(vs) => vs
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        })
        .collect()
}

fn select<'a>(path: &str, body: Option<&'a Value>) -> Vec<&'a Value> {
    match (JsonPath::parse(path), body) {
        (Ok(p), Some(b)) => p.query(b).all(),
        _ => Vec::new(),
    }
}

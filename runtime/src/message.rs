//! The host's view of what a policy reads and returns, shared by Wasm and Lua guests.

use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

/// HTTP headers in wire order; names compare case-insensitively.
pub type Headers = Vec<(String, String)>;

/// The caller's verified identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// A JWT `sub`, an API key id or a certificate identity. Never a credential.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Verified claims.
    pub claims: Vec<(String, serde_json::Value)>,
}

/// Read-only facts about one invocation. Its `Debug` shows config keys, never values
/// (a route may grant a policy a secret through its config).
#[derive(Clone, Default, PartialEq)]
pub struct Context {
    /// The tenant that owns the route.
    pub tenant: String,
    /// The route's name.
    pub route: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// The caller, when authenticated.
    pub identity: Option<Identity>,
    /// The policy's configuration from the route.
    pub config: Vec<(String, String)>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("tenant", &self.tenant)
            .field("route", &self.route)
            .field("correlation_id", &self.correlation_id)
            .field("identity", &self.identity.as_ref().map(|i| &i.subject))
            .field(
                "config_keys",
                &self.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An HTTP request as a policy sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Headers in wire order.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// An HTTP response as a policy sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    /// Status code, 100..=599.
    pub status: u16,
    /// Headers in wire order.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// What a policy decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<T> {
    /// Go on with this (possibly changed) message.
    Continue(T),
    /// End the pipeline with this response (a deny, say).
    Respond(Response),
}

/// Severity of a guest log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

impl LogLevel {
    /// The lower-case name (`info`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The text, as the guest wrote it.
    pub message: String,
}

/// What one invocation cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Fuel (instructions) consumed; 0 when fuel is off.
    pub fuel: u64,
    /// Peak linear memory (Wasm) or heap (Lua) in bytes.
    pub memory_peak: u64,
    /// Wall-clock time of the invocation, instantiation included.
    pub duration: Duration,
}

/// The result of one invocation with everything it reported, also when it failed.
#[derive(Debug)]
pub struct Invocation<T> {
    /// The decision, or why there is none.
    pub result: Result<Decision<T>>,
    /// Lines the guest logged, within the log cap.
    pub logs: Vec<LogLine>,
    /// Log lines dropped because the cap was reached.
    pub logs_dropped: u64,
    /// Paths the guest reported as redacted, in order.
    pub redacted: Vec<String>,
    /// Cost.
    pub stats: Stats,
}

/// What an invocation reported, before its result is attached.
pub(crate) struct Pending {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u64,
    pub(crate) redacted: Vec<String>,
    pub(crate) stats: Stats,
}

impl Pending {
    /// Nothing reported; only the time spent.
    pub(crate) fn empty(duration: Duration) -> Self {
        Pending {
            logs: Vec::new(),
            logs_dropped: 0,
            redacted: Vec::new(),
            stats: Stats {
                duration,
                ..Stats::default()
            },
        }
    }

    pub(crate) fn finish<T>(self, result: Result<Decision<T>>) -> Invocation<T> {
        Invocation {
            result,
            logs: self.logs,
            logs_dropped: self.logs_dropped,
            redacted: self.redacted,
            stats: self.stats,
        }
    }
}

/// The invocation of a phase the policy does not implement: unchanged, free.
pub(crate) fn skipped<T>(message: T) -> Invocation<T> {
    Pending::empty(Duration::ZERO).finish(Ok(Decision::Continue(message)))
}

/// Checks what a guest returned for a header: a valid HTTP token name and a value
/// without control characters, so a policy cannot smuggle a second header or response.
pub(crate) fn check_headers(headers: &Headers) -> Result<()> {
    for (name, value) in headers {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !name_ok {
            return Err(Error::InvalidOutput(format!(
                "header name {:?} is not a valid HTTP token",
                truncate(name, 64)
            )));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Error::InvalidOutput(format!(
                "value of header `{}` contains a control character",
                truncate(name, 64)
            )));
        }
    }
    Ok(())
}

/// Checks a status code a guest returned.
pub(crate) fn check_status(status: u16) -> Result<()> {
    if (100..=599).contains(&status) {
        Ok(())
    } else {
        Err(Error::InvalidOutput(format!(
            "status {status} is outside 100..=599"
        )))
    }
}

/// The byte size of a head, as counted against the output cap.
pub(crate) fn headers_size(headers: &Headers) -> u64 {
    headers
        .iter()
        .map(|(n, v)| (n.len() + v.len()) as u64)
        .sum()
}

/// `s` cut to `max` bytes with control characters (newlines included) made spaces, so
/// a guest's words fit one log line or audit field.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    truncate(s, max)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

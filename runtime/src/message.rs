//! The host's view of what a policy reads and returns, shared by Wasm and Lua guests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::limits::{Limits, fuel_for_time};

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
    /// What seals fields for the host's `seal` function, when the route grants this
    /// policy field encryption; `None` refuses every call.
    pub sealer: Option<Sealer>,
}

/// Seals one value at one normalized path with the tenant's data key: `(path, JSON text,
/// deterministic)` to a token, or a message for the policy (never holding the value).
#[derive(Clone)]
pub struct Sealer(pub Arc<SealFn>);

/// What a [`Sealer`] calls: `(path, JSON text, deterministic)` to a token or a message.
pub type SealFn = dyn Fn(&str, &str, bool) -> Result<String, String> + Send + Sync;

impl Sealer {
    /// Seals `value` (JSON text) at `path`.
    pub fn seal(&self, path: &str, value: &str, deterministic: bool) -> Result<String, String> {
        (self.0)(path, value, deterministic)
    }
}

impl PartialEq for Sealer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
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
            .field("seals", &self.sealer.is_some())
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
    /// Fuel (Wasm instructions, Luau interrupt ticks) consumed; 0 when fuel metering is
    /// off. A run that failed before its own count was complete (a deadline, a trap; not
    /// running out of fuel, which is counted exactly) is charged at least
    /// [`Limits::FUEL_PER_SECOND`] per second it ran: Wasm code keeps its count in a
    /// register between calls, and a trap loses what was not yet stored.
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
    /// JSONPaths the guest reported as redacted, in order, each once. Empty when the
    /// invocation failed: a failed run's claims are not audited as done.
    pub redacted: Vec<String>,
    /// Reports dropped: not a JSONPath (a value passed by mistake, free text, a
    /// filter), or past the caps ([`crate::MAX_REDACTED_PATHS`],
    /// [`crate::MAX_REDACTED_BYTES`]).
    pub redacted_dropped: u64,
    /// Cost.
    pub stats: Stats,
}

/// What an invocation reported, before its result is attached.
pub(crate) struct Pending {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u64,
    pub(crate) redacted: crate::report::Redactions,
    /// Whether fuel was counted (so that a failed run is charged its time).
    pub(crate) metered: bool,
    /// A limit the guest ran into and survived (a refused memory growth it caught): it,
    /// not the guest's own message, is the cause when the guest then fails.
    pub(crate) survived: Option<Error>,
    pub(crate) stats: Stats,
}

impl Pending {
    /// Nothing reported; only the time spent.
    pub(crate) fn empty(duration: Duration) -> Self {
        Pending {
            logs: Vec::new(),
            logs_dropped: 0,
            redacted: Default::default(),
            metered: false,
            survived: None,
            stats: Stats {
                duration,
                ..Stats::default()
            },
        }
    }

    pub(crate) fn finish<T>(self, result: Result<Decision<T>>) -> Invocation<T> {
        let mut stats = self.stats;
        // A JS engine reports a refused allocation as an exception ("out of memory")
        // the policy returns as its error: the limit is the cause.
        let result = match (result, self.survived) {
            (Err(Error::Guest(_)), Some(limit)) => Err(limit),
            (result, _) => result,
        };
        let redacted = match &result {
            Ok(_) => self.redacted.paths,
            Err(e) => {
                // Running out of fuel is counted exactly; anything else that ends a run
                // early may have lost count (see `Stats::fuel`).
                if self.metered && !matches!(e, Error::FuelExhausted { .. }) {
                    stats.fuel = stats.fuel.max(fuel_for_time(stats.duration));
                }
                Vec::new()
            }
        };
        Invocation {
            result,
            logs: self.logs,
            logs_dropped: self.logs_dropped,
            redacted,
            redacted_dropped: self.redacted.dropped,
            stats,
        }
    }
}

/// The invocation of a phase the policy does not implement: unchanged, free.
pub(crate) fn skipped<T>(message: T) -> Invocation<T> {
    Pending::empty(Duration::ZERO).finish(Ok(Decision::Continue(message)))
}

/// Checks the size of a head a guest returned against the head caps: `start` is the
/// bytes of its method, path and query (0 for a response).
pub(crate) fn check_head(start: u64, headers: &[(String, String)], limits: &Limits) -> Result<()> {
    let bytes = start + headers_size(headers);
    if headers.len() > limits.header_limit() || bytes > limits.head_limit() {
        return Err(head_too_large(headers.len(), bytes, limits));
    }
    Ok(())
}

/// [`Error::HeadTooLarge`] for a head of (at least) `headers` headers and `bytes` bytes.
pub(crate) fn head_too_large(headers: usize, bytes: u64, limits: &Limits) -> Error {
    Error::HeadTooLarge {
        headers: headers as u64,
        bytes,
        max_headers: limits.header_limit() as u64,
        max_bytes: limits.head_limit(),
    }
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

/// Checks the size of an output against the output cap.
pub(crate) fn check_output(size: u64, limit: u64) -> Result<()> {
    if size > limit {
        Err(Error::OutputTooLarge { size, limit })
    } else {
        Ok(())
    }
}

/// The byte size of a head, as counted against the output cap.
pub(crate) fn headers_size(headers: &[(String, String)]) -> u64 {
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

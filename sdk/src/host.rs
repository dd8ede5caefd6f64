//! Safe wrappers over what the host offers: logging, redaction reports and config.
//! Natively (in unit tests) they record into [`crate::testing`].

/// Severity of a log line.
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

/// Logs a line. The host keeps a bounded number of bytes per invocation; never log
/// request values you would not want in a log (log paths and counts, not PII).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::glue::hostcalls::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// Reports that the value at `path` (a JSONPath like `$.user.ssn`) was redacted. The
/// audit record keeps the path, never the value.
pub fn redacted(path: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::glue::hostcalls::redacted(path);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_redacted(path);
}

/// The route's config value for `key`, read from the host. [`crate::Context::config`]
/// gives the same values without a host call.
pub fn config(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::glue::hostcalls::config(key);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::config(key);
}

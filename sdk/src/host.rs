//! Safe wrappers over what the host offers: logging, redaction reports and config.
//! Natively (in unit tests) they record into `palisade_sdk::testing`.

pub use crate::backend::LogLevel;

/// Logs a line. The host keeps a bounded number of bytes per invocation; never log
/// request values you would not want in a log (log paths and counts, not PII).
pub fn log(level: LogLevel, message: &str) {
    crate::backend::log(level, message);
}

/// Reports that the value at `path` (a JSONPath like `$.user.ssn`) was redacted. The
/// audit record keeps the path, never the value.
pub fn redacted(path: &str) {
    crate::backend::redacted(path);
}

/// The route's config value for `key`, read from the host. [`crate::Context::config`]
/// gives the same values without a host call.
pub fn config(key: &str) -> Option<String> {
    crate::backend::config(key)
}

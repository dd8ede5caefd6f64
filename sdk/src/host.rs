//! Safe wrappers over what the host offers: logging, redaction reports, config and
//! field encryption.
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

/// How [`seal`] encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealMode {
    /// AES-256-GCM with a fresh nonce: equal values give unrelated tokens.
    Randomized,
    /// AES-SIV: equal values at the same path give equal tokens, so they stay joinable
    /// (and anyone who sees two tokens learns whether the values are equal).
    Deterministic,
}

/// Seals `value`, found at `path` (a normalized JSONPath such as `$['card'][0]`), into a
/// field encryption token with the tenant's data key, exactly as the gateway's `encrypt` redaction does; the path is
/// reported as redacted. An authorised reader gets the value back with
/// `palisade secret reveal` and the same path.
///
/// # Errors
///
/// The host's message (never holding the value) when the route does not grant this
/// policy `field_encryption = true`, or `path` is not a normalized path. Natively (unit
/// tests) there is no key: the token is `sealed:` followed by the path.
pub fn seal(path: &str, value: &serde_json::Value, mode: SealMode) -> Result<String, String> {
    crate::backend::seal(path, &value.to_string(), mode == SealMode::Deterministic)
}

//! What the SDK asks of its host, chosen once by target: the component's host calls on
//! wasm (`wasm.rs`), the native test harness's recorder elsewhere (`native.rs`). The
//! message types and the public host functions call this; it calls nothing back.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use self::native::{body, body_size, config, log, redacted, seal};
#[cfg(target_arch = "wasm32")]
pub(crate) use self::wasm::{body, body_size, config, log, redacted, seal};

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

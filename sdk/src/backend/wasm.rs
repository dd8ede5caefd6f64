//! The component's host calls (`palisade:policy/host`).

use super::LogLevel;
use crate::bindings::palisade::policy::{host, types::LogLevel as WitLevel};

pub(crate) fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => WitLevel::Trace,
        LogLevel::Debug => WitLevel::Debug,
        LogLevel::Info => WitLevel::Info,
        LogLevel::Warn => WitLevel::Warn,
        LogLevel::Error => WitLevel::Error,
    };
    host::log(level, message);
}

pub(crate) fn redacted(path: &str) {
    host::redacted(path);
}

pub(crate) fn seal(path: &str, value: &str, deterministic: bool) -> Result<String, String> {
    host::seal(path, value, deterministic)
}

pub(crate) fn config(key: &str) -> Option<String> {
    host::config(key)
}

pub(crate) fn body() -> Vec<u8> {
    host::body()
}

pub(crate) fn body_size() -> u64 {
    host::body_size()
}

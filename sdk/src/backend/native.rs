//! Natively (unit tests of policies), host calls are recorded for
//! [`crate::testing`]; the body is the request's own, never fetched.

use std::cell::RefCell;

use super::LogLevel;

#[derive(Default)]
struct Recorder {
    logs: Vec<(LogLevel, String)>,
    redacted: Vec<String>,
    config: Vec<(String, String)>,
}

thread_local! {
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

/// Starts recording one invocation with the route's `config`.
pub(crate) fn begin(config: Vec<(String, String)>) {
    RECORDER.with(|r| {
        *r.borrow_mut() = Recorder {
            config,
            ..Recorder::default()
        }
    });
}

/// Ends the invocation: the lines it logged and the paths it reported redacted.
pub(crate) fn finish() -> (Vec<(LogLevel, String)>, Vec<String>) {
    let recorder = RECORDER.with(|r| std::mem::take(&mut *r.borrow_mut()));
    (recorder.logs, recorder.redacted)
}

pub(crate) fn log(level: LogLevel, message: &str) {
    RECORDER.with(|r| r.borrow_mut().logs.push((level, message.to_string())));
}

pub(crate) fn redacted(path: &str) {
    RECORDER.with(|r| r.borrow_mut().redacted.push(path.to_string()));
}

pub(crate) fn seal(path: &str, _value: &str, _deterministic: bool) -> Result<String, String> {
    redacted(path);
    Ok(format!("sealed:{path}"))
}

pub(crate) fn config(key: &str) -> Option<String> {
    RECORDER.with(|r| {
        r.borrow()
            .config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

pub(crate) fn body() -> Vec<u8> {
    Vec::new()
}

pub(crate) fn body_size() -> u64 {
    0
}

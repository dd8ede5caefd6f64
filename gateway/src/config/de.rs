//! Deserializing helpers the subsystems' config types share: durations written as whole
//! milliseconds or microseconds, and paths relative to the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A `*_ms` key: whole milliseconds.
pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A `*_us` key: whole microseconds.
pub(crate) fn micros<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_micros)
}

/// `path` against the config file's directory `base` (an absolute path stays as it is).
pub(crate) fn rebase(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

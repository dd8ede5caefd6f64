//! `[registry]`, typed: where module bytes are kept, the largest module, how long a
//! compile may take.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::de::{millis, rebase};

/// `[registry]`. The directory is the config file's directory's when relative (see
/// [`Config::rebase`]); metadata goes in the ledger's database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The directory for module bytes (`dir`). By default `registry`.
    #[serde(default = "d::dir")]
    pub dir: PathBuf,
    /// Largest module accepted, bytes. By default 16 MiB.
    #[serde(default = "d::max_module_bytes")]
    pub max_module_bytes: u64,
    /// Time a module may take to compile at upload (`compile_timeout_ms`). By default
    /// 30 s.
    #[serde(
        rename = "compile_timeout_ms",
        default = "d::compile_timeout",
        deserialize_with = "millis"
    )]
    pub compile_timeout: Duration,
}

impl Config {
    /// A registry in `dir` with the default limits.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Config {
            dir: dir.into(),
            max_module_bytes: d::max_module_bytes(),
            compile_timeout: d::compile_timeout(),
        }
    }

    /// Makes `dir` relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &Path) {
        self.dir = rebase(base, &self.dir);
    }

    /// Where precompiled modules are cached when `[runtime] cache_dir` is not set.
    pub fn artifacts(&self) -> PathBuf {
        self.dir.join("artifacts")
    }
}

mod d {
    use std::time::Duration;

    pub(super) fn dir() -> std::path::PathBuf {
        "registry".into()
    }
    pub(super) fn max_module_bytes() -> u64 {
        16 << 20
    }
    pub(super) fn compile_timeout() -> Duration {
        Duration::from_secs(30)
    }
}

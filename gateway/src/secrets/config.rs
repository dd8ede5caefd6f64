//! `[secrets]`, typed: where the master key is (a key file or a PKCS#11 token, one or the
//! other), how long a decrypted value is cached, how many seals a data key makes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::de::{millis, rebase};

/// `[secrets]`. Relative paths are the config file's directory's (see [`Config::rebase`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Raw")]
pub struct Config {
    /// The master key: new data keys are wrapped under it.
    pub master: Master,
    /// Master key files that still unwrap data keys they wrapped (`previous_master_keys`):
    /// held during a rotation, until `palisade secret rotate-master` has re-wrapped
    /// every data key under `master` (docs/operations.md#rotate-the-master-key).
    pub previous: Vec<PathBuf>,
    /// How long a decrypted secret stays in memory (`cache_ms`).
    pub cache: Duration,
    /// Seals per data key before a new key version is made (at least 1).
    pub max_uses_per_key: u64,
}

/// Where the master key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Master {
    /// A key file (`palisade keygen --master`); `master_key`, by default `master.key`.
    File(PathBuf),
    /// A key on a PKCS#11 token (`[secrets.pkcs11]`).
    Pkcs11(Pkcs11),
}

/// `[secrets.pkcs11]`: an AES key on a PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11 {
    /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// A file holding the user PIN.
    pub pin_file: PathBuf,
    /// The AES key's label. By default `palisade-master`.
    #[serde(default = "d::pkcs11_key")]
    pub key: String,
}

impl Config {
    /// A store whose master key is the file `path`, with the default cache and key use
    /// bound.
    pub fn with_key_file(path: impl Into<PathBuf>) -> Self {
        Config {
            master: Master::File(path.into()),
            previous: Vec::new(),
            cache: d::cache(),
            max_uses_per_key: d::max_uses_per_key(),
        }
    }

    /// Makes the file paths relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &Path) {
        for p in &mut self.previous {
            *p = rebase(base, p);
        }
        match &mut self.master {
            Master::File(path) => *path = rebase(base, path),
            Master::Pkcs11(p) => {
                p.module = rebase(base, &p.module);
                p.pin_file = rebase(base, &p.pin_file);
            }
        }
    }
}

/// `[secrets]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    master_key: Option<PathBuf>,
    pkcs11: Option<Pkcs11>,
    #[serde(default)]
    previous_master_keys: Vec<PathBuf>,
    #[serde(default = "d::cache", deserialize_with = "millis")]
    cache_ms: Duration,
    #[serde(default = "d::max_uses_per_key")]
    max_uses_per_key: u64,
}

impl TryFrom<Raw> for Config {
    type Error = &'static str;

    fn try_from(raw: Raw) -> Result<Self, &'static str> {
        let master = match (raw.master_key, raw.pkcs11) {
            (Some(_), Some(_)) => return Err("set `master_key` or `pkcs11`, not both"),
            (None, Some(p)) => Master::Pkcs11(p),
            (file, None) => Master::File(file.unwrap_or_else(|| "master.key".into())),
        };
        if raw.max_uses_per_key == 0 {
            return Err("max_uses_per_key must be at least 1");
        }
        Ok(Config {
            master,
            previous: raw.previous_master_keys,
            cache: raw.cache_ms,
            max_uses_per_key: raw.max_uses_per_key,
        })
    }
}

mod d {
    use std::time::Duration;

    pub(super) fn cache() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn max_uses_per_key() -> u64 {
        1 << 32
    }
    pub(super) fn pkcs11_key() -> String {
        "palisade-master".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn the_master_key_is_a_file_or_a_token_never_both() {
        let mut c = parse("cache_ms = 5").unwrap();
        c.rebase(Path::new("/srv"));
        assert_eq!(c.master, Master::File("/srv/master.key".into()));
        assert_eq!(c.cache, Duration::from_millis(5));
        assert_eq!(c.max_uses_per_key, 1 << 32);
        let mut c =
            parse("[pkcs11]\nmodule = \"lib.so\"\ntoken = \"t\"\npin_file = \"/run/pin\"").unwrap();
        c.rebase(Path::new("/srv"));
        assert_eq!(
            c.master,
            Master::Pkcs11(Pkcs11 {
                module: "/srv/lib.so".into(),
                token: "t".into(),
                pin_file: "/run/pin".into(),
                key: "palisade-master".into(),
            })
        );
        assert_eq!(
            parse("master_key = \"m\"\n[pkcs11]\nmodule = \"l\"\ntoken = \"t\"\npin_file = \"p\"")
                .unwrap_err(),
            "set `master_key` or `pkcs11`, not both"
        );
        assert_eq!(
            parse("max_uses_per_key = 0").unwrap_err(),
            "max_uses_per_key must be at least 1"
        );
    }
}

//! `[audit]`: where the ledger lives, how blocks commit, signed checkpoints; and opening
//! the ledger it describes. See `docs/audit.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_ledger::{Durability, Ledger, Options, Target, checkpoint};
use serde::Deserialize;

use crate::config::de::{micros, millis, rebase};

/// `[audit]`, typed. Relative paths are the config file's directory's (see
/// [`Config::rebase`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Raw")]
pub struct Config {
    /// The ledger's database: a SQLite file (by default `palisade-audit.db`) or a
    /// PostgreSQL URL for the writer role.
    pub store: Target,
    /// `sync` (a response waits for its block to be durable) or `async`.
    pub durability: Durability,
    /// Group commit under concurrent load (`commit_delay_us`; zero turns it off).
    pub commit_delay: Duration,
    /// Signed checkpoints, when configured.
    pub checkpoints: Option<Checkpoints>,
    /// This gateway's name in every block it writes (`instance`; by default the host
    /// name): which of the gateways sharing a ledger served a request.
    pub instance: String,
    /// Sinks the ledger is exported to (`[[audit.export]]`, owned by
    /// [`crate::export`]). By default none.
    pub export: Vec<crate::export::Sink>,
}

/// Signed checkpoints of the chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoints {
    /// The file they are appended to.
    pub file: PathBuf,
    /// The Ed25519 signing key (created if missing); by default `checkpoint.key` beside
    /// the checkpoint file.
    pub key: PathBuf,
    /// How often the head is signed (`checkpoint_interval_ms`).
    pub interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config::try_from(Raw::default()).expect("the defaults are valid")
    }
}

impl Config {
    /// Makes the file paths relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &Path) {
        if let Target::Sqlite(db) = &mut self.store {
            *db = rebase(base, db);
        }
        if let Some(c) = &mut self.checkpoints {
            c.file = rebase(base, &c.file);
            c.key = rebase(base, &c.key);
        }
        for sink in &mut self.export {
            sink.rebase(base);
        }
    }
}

/// `[audit]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    sqlite: Option<PathBuf>,
    postgres: Option<String>,
    #[serde(default)]
    durability: Written,
    #[serde(default = "d::commit_delay", deserialize_with = "micros")]
    commit_delay_us: Duration,
    checkpoint: Option<PathBuf>,
    checkpoint_key: Option<PathBuf>,
    #[serde(default = "d::checkpoint_interval", deserialize_with = "millis")]
    checkpoint_interval_ms: Duration,
    instance: Option<String>,
    #[serde(default)]
    export: Vec<crate::export::Sink>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            sqlite: None,
            postgres: None,
            durability: Written::Sync,
            commit_delay_us: d::commit_delay(),
            checkpoint: None,
            checkpoint_key: None,
            checkpoint_interval_ms: d::checkpoint_interval(),
            instance: None,
            export: Vec::new(),
        }
    }
}

/// `durability` as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Written {
    #[default]
    Sync,
    Async,
}

impl TryFrom<Raw> for Config {
    type Error = String;

    fn try_from(raw: Raw) -> Result<Self, String> {
        let store = match (raw.sqlite, raw.postgres) {
            (Some(_), Some(_)) => return Err("set `sqlite` or `postgres`, not both".into()),
            (_, Some(url)) => Target::Postgres(url),
            (db, None) => Target::Sqlite(db.unwrap_or_else(|| "palisade-audit.db".into())),
        };
        if raw.checkpoint_interval_ms.is_zero() {
            return Err("checkpoint_interval_ms must be at least 1".into());
        }
        let checkpoints = match (raw.checkpoint, raw.checkpoint_key) {
            (Some(file), key) => Some(Checkpoints {
                key: key.unwrap_or_else(|| file.with_file_name("checkpoint.key")),
                file,
                interval: raw.checkpoint_interval_ms,
            }),
            (None, Some(_)) => return Err("`checkpoint_key` needs `checkpoint`".into()),
            (None, None) => None,
        };
        let instance = match raw.instance {
            Some(name)
                if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) =>
            {
                return Err("instance must be 1-128 characters, none a control character".into());
            }
            Some(name) => name,
            None => d::instance(),
        };
        let mut names: Vec<&str> = raw.export.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two export sinks are named {:?}", w[0]));
        }
        Ok(Config {
            export: raw.export,
            instance,
            store,
            durability: match raw.durability {
                Written::Sync => Durability::Sync,
                Written::Async => Durability::Async,
            },
            commit_delay: raw.commit_delay_us,
            checkpoints,
        })
    }
}

mod d {
    use std::time::Duration;

    pub(super) fn commit_delay() -> Duration {
        palisade_ledger::Options::default().commit_delay
    }
    pub(super) fn checkpoint_interval() -> Duration {
        Duration::from_secs(10)
    }
    /// The host name (Linux), else `palisade`.
    pub(super) fn instance() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "palisade".into())
    }
}

/// Where the admin API finds the ledger to verify.
#[derive(Debug, Clone)]
pub(crate) struct LedgerInfo {
    pub(crate) target: Target,
    /// Checkpoint file and the public key that verifies it.
    pub(crate) checkpoints: Option<(PathBuf, PathBuf)>,
}

/// Opens the ledger `config` describes (creating the checkpoint key when missing).
///
/// # Errors
///
/// When the database or the checkpoint key cannot be opened.
pub(crate) fn open(config: &Config) -> Result<(Ledger, LedgerInfo), palisade_ledger::Error> {
    let mut info = LedgerInfo {
        target: config.store.clone(),
        checkpoints: None,
    };
    let signer = match &config.checkpoints {
        None => None,
        Some(c) => {
            if !c.key.exists() {
                checkpoint::generate_key(&c.key)?;
            }
            let key = checkpoint::load_signing_key(&c.key)?;
            info.checkpoints = Some((c.file.clone(), checkpoint::public_key_path(&c.key)));
            Some(checkpoint::Signer::new(key, c.file.clone(), c.interval))
        }
    };
    let ledger = Ledger::open(
        config.store.clone(),
        Options {
            durability: config.durability,
            checkpoints: signer,
            commit_delay: config.commit_delay,
            instance: Some(config.instance.clone()),
            ..Options::default()
        },
    )?;
    Ok((ledger, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn audit_config_is_lowered_to_its_types() {
        let mut c = parse(
            "sqlite = \"a.db\"\ndurability = \"async\"\ncommit_delay_us = 50\ncheckpoint = \"cp/log\"",
        )
        .unwrap();
        c.rebase(Path::new("/etc/palisade"));
        assert_eq!(c.store, Target::Sqlite("/etc/palisade/a.db".into()));
        assert_eq!(c.durability, Durability::Async);
        assert_eq!(c.commit_delay, Duration::from_micros(50));
        let cp = c.checkpoints.unwrap();
        assert_eq!(cp.file, Path::new("/etc/palisade/cp/log"));
        assert_eq!(cp.key, Path::new("/etc/palisade/cp/checkpoint.key"));
        assert_eq!(cp.interval, Duration::from_secs(10));
        assert_eq!(
            Config::default().store,
            Target::Sqlite("palisade-audit.db".into())
        );
        assert_eq!(
            parse("postgres = \"host=db\"").unwrap().store,
            Target::Postgres("host=db".into())
        );
    }

    #[test]
    fn either_or_choices_are_refused_when_both_or_neither_make_sense() {
        for (text, message) in [
            (
                "sqlite = \"a\"\npostgres = \"b\"",
                "set `sqlite` or `postgres`, not both",
            ),
            (
                "checkpoint_key = \"k\"",
                "`checkpoint_key` needs `checkpoint`",
            ),
            (
                "checkpoint_interval_ms = 0",
                "checkpoint_interval_ms must be at least 1",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err(), message, "{text}");
        }
        assert!(
            parse("sqlite_file = \"a\"")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}

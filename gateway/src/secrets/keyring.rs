//! The master keys a store holds: the current one, which wraps new data keys, and during
//! a rotation the previous ones, which still unwrap the data keys they wrapped.

use std::sync::Arc;

use super::config::{Config, Master};
use super::error::SecretError;
use super::master::{FileMasterKey, MasterKey};
use super::pkcs11::Pkcs11MasterKey;

/// The master keys of one configuration, found by fingerprint.
pub(crate) struct Keyring {
    current: Arc<dyn MasterKey>,
    previous: Vec<Arc<dyn MasterKey>>,
}

impl Keyring {
    /// The keys `config` names (`master_key` or `[secrets.pkcs11]`, and
    /// `previous_master_keys`).
    pub(crate) fn open(config: &Config) -> Result<Self, SecretError> {
        let current: Arc<dyn MasterKey> = match &config.master {
            Master::File(path) => Arc::new(FileMasterKey::load(path)?),
            Master::Pkcs11(token) => Arc::new(Pkcs11MasterKey::open(token)?),
        };
        let previous = config
            .previous
            .iter()
            .map(|p| Ok(Arc::new(FileMasterKey::load(p)?) as Arc<dyn MasterKey>))
            .collect::<Result<_, SecretError>>()?;
        Ok(Keyring { current, previous })
    }

    /// A ring of one key.
    pub(crate) fn only(current: Arc<dyn MasterKey>) -> Self {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// The key new data keys are wrapped under.
    pub(crate) fn current(&self) -> &Arc<dyn MasterKey> {
        &self.current
    }

    /// The held key whose fingerprint is `id`.
    pub(crate) fn holding(&self, id: &str) -> Option<&Arc<dyn MasterKey>> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
    }

    /// Every fingerprint held, the current one first.
    pub(crate) fn ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.id())
            .collect()
    }
}

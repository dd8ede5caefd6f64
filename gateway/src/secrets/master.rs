//! Where the master key lives: a provider that wraps and unwraps data keys and never
//! lets the key out. A local file here; PKCS#11 in `pkcs11.rs`.

use std::path::Path;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{SecretError, aead};

/// Where the master key lives: it wraps and unwraps data keys and never leaves.
pub trait MasterKey: Send + Sync {
    /// A stable, public fingerprint of the key (recorded beside what it wrapped).
    fn id(&self) -> String;
    /// Wraps a data key.
    ///
    /// # Errors
    ///
    /// When the provider cannot.
    fn wrap(&self, data_key: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError>;
    /// Unwraps a data key.
    ///
    /// # Errors
    ///
    /// [`SecretError::Decrypt`] when `wrapped` was not made by this key with `aad`.
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError>;
}

/// A master key in a local file: 64 hex digits, mode 0600.
pub struct FileMasterKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for FileMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl FileMasterKey {
    /// Creates a new key file (refuses to overwrite one), mode 0600.
    ///
    /// # Errors
    ///
    /// When the file exists or cannot be written.
    pub fn generate(path: &Path) -> Result<Self, SecretError> {
        use palisade_ledger::keyfile;
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).expect("the OS random source is available");
        let text = Zeroizing::new(
            ed25519_dalek::pkcs8::spki::der::pem::encode_string(
                keyfile::MASTER_LABEL,
                ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
                key.as_ref(),
            )
            .expect("32 bytes encode"),
        );
        keyfile::write_new(path, text.as_bytes(), 0o600)
            .map_err(|e| SecretError::MasterKey(e.to_string()))?;
        Ok(Self::from_key(key))
    }

    /// Reads a key file: a `PALISADE MASTER KEY` (or 64 hex digits of an earlier
    /// release); any other kind of key is refused by name.
    ///
    /// # Errors
    ///
    /// When it cannot be read or is not a master key.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let file = palisade_ledger::keyfile::KeyFile::read(path)
            .map_err(|e| SecretError::MasterKey(e.to_string()))?;
        let key = file
            .master_bytes()
            .map_err(|e| SecretError::MasterKey(e.to_string()))?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: Zeroizing<[u8; 32]>) -> Self {
        let id = hex::encode(&Sha256::digest(Sha256::digest(key.as_ref()))[..8]);
        FileMasterKey {
            key,
            id: format!("file:{id}"),
        }
    }
}

impl MasterKey for FileMasterKey {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, data_key: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        Ok(aead::seal(&self.key, aad, data_key))
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        aead::open(&self.key, aad, wrapped)
    }
}

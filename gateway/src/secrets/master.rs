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
        use std::io::Write as _;
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).expect("the OS random source is available");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(path)
            .map_err(|e| SecretError::MasterKey(format!("{}: {e}", path.display())))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_ref())));
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| SecretError::MasterKey(format!("{}: {e}", path.display())))?;
        Ok(Self::from_key(key))
    }

    /// Reads a key file.
    ///
    /// # Errors
    ///
    /// When it cannot be read or is not 64 hex digits.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| SecretError::MasterKey(format!("{}: {e}", path.display())))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| {
            SecretError::MasterKey(format!("{}: expected 64 hex digits", path.display()))
        })?;
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

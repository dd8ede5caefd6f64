//! A compiled, validated policy, shareable across threads.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex};

use crate::cache::{self, CacheOutcome};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::invocation::{self, Linked};
use crate::limits::Limits;
use crate::message::{Context, Invocation, Request, Response};
use crate::policy::Phases;
use crate::validate::{self, REQUEST_PHASE, RESPONSE_PHASE};

/// A policy module compiled once and instantiated afresh for every invocation.
///
/// Cloning is cheap; clones share the compiled code. Loading validates the module
/// (size cap, structure, compile bounds, import allowlist, contract version),
/// compiles it (or takes it from the artifact cache), pre-links it, and instantiates
/// it once to check that its exports have the contract's signatures.
#[derive(Clone)]
pub struct WasmPolicy {
    pub(crate) inner: Arc<WasmInner>,
    pub(crate) limits: Limits,
}

pub(crate) struct WasmInner {
    linked: Linked,
    name: String,
    digest: [u8; 32],
    size: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    cache: CacheOutcome,
}

impl WasmPolicy {
    /// Validates and compiles a policy from the bytes of a component, or of a core
    /// module that carries a WIT type section (componentized here).
    ///
    /// # Errors
    ///
    /// [`Error::ModuleTooLarge`], [`Error::InvalidModule`], [`Error::CompileBound`],
    /// [`Error::ForbiddenImport`] or [`Error::ContractVersion`] when the module is
    /// refused; [`Error::Engine`] when the host fails.
    pub fn new(engine: &Engine, name: impl Into<String>, bytes: &[u8]) -> Result<Self> {
        let config = &engine.inner.config;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let (component_bytes, admitted) = validate::admit(bytes, config)?;
        let (component, cache) = match &engine.inner.cache {
            Some(c) => c.load_or_compile(&engine.inner.wasmtime, &digest, &component_bytes)?,
            None => (
                cache::compile(&engine.inner.wasmtime, &component_bytes)?,
                CacheOutcome::Disabled,
            ),
        };
        let linker = if admitted.uses_wasi {
            &engine.inner.wasi_linker
        } else {
            &engine.inner.linker
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| Error::InvalidModule(format!("cannot be linked: {e:#}")))?;
        let request = phase_export(&component, REQUEST_PHASE, "on-request");
        let response = phase_export(&component, RESPONSE_PHASE, "on-response");
        let policy = WasmPolicy {
            inner: Arc::new(WasmInner {
                linked: Linked {
                    engine: engine.clone(),
                    pre,
                    request,
                    response,
                    uses_wasi: admitted.uses_wasi,
                },
                name: name.into(),
                digest,
                size: bytes.len(),
                imports: admitted.imports,
                exports: admitted.exports,
                cache,
            }),
            limits: config.default_limits.clone(),
        };
        invocation::check_signatures(&policy.inner.linked, &policy.limits)?;
        Ok(policy)
    }

    /// Reads and loads a module file. The policy is named after the file stem.
    ///
    /// # Errors
    ///
    /// As [`WasmPolicy::new`], plus [`Error::Io`] when the file cannot be read and
    /// [`Error::ModuleTooLarge`] before reading a file over the size cap.
    pub fn from_file(engine: &Engine, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_capped(path, engine.inner.config.max_module_size)?;
        Self::new(engine, file_stem(path), &bytes)
    }

    /// Returns this policy with other limits. The compiled code is shared.
    pub fn with_limits(&self, limits: Limits) -> Self {
        WasmPolicy {
            inner: self.inner.clone(),
            limits,
        }
    }

    /// The limits invocations run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// SHA-256 of the module bytes as loaded.
    pub fn digest(&self) -> [u8; 32] {
        self.inner.digest
    }
    /// Size of the module bytes as loaded.
    pub fn size(&self) -> usize {
        self.inner.size
    }
    /// Which phases the policy implements.
    pub fn phases(&self) -> Phases {
        Phases {
            request: self.inner.linked.request.is_some(),
            response: self.inner.linked.response.is_some(),
        }
    }
    /// The component's top-level imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }
    /// The component's top-level exports.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }
    /// Whether an async invocation of this policy yields to the executor: its engine
    /// checks epochs, and it was not built for WASI (whose host functions may block).
    pub(crate) fn yields(&self) -> bool {
        self.inner.linked.engine.inner.config.epoch_interruption && !self.uses_wasi()
    }

    /// Whether the policy was built for WASI (and runs with the deny-all context).
    pub fn uses_wasi(&self) -> bool {
        self.inner.linked.uses_wasi
    }
    /// How the compiled code was obtained.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }
}

impl WasmPolicy {
    /// Runs the request phase on `req`, in a fresh instance.
    ///
    /// A policy that does not implement the request phase continues with `req` unchanged
    /// and costs nothing. The invocation never panics and never shares state with another:
    /// every failure is an [`Error`] in [`Invocation::result`].
    pub fn on_request(&self, ctx: &Context, req: Request) -> Invocation<Request> {
        self.inner.linked.on_request(&self.limits, ctx, req)
    }

    /// Runs the response phase on `res`, in a fresh instance; `req` is the request as it
    /// was sent upstream (its body is not passed to the guest).
    ///
    /// A policy that does not implement the response phase continues with `res`
    /// unchanged and costs nothing.
    pub fn on_response(&self, ctx: &Context, req: &Request, res: Response) -> Invocation<Response> {
        self.inner.linked.on_response(&self.limits, ctx, req, res)
    }

    /// [`WasmPolicy::on_request`] on the calling async task: the guest runs on a fiber and
    /// yields to the executor at every epoch tick, so it needs no thread of its own and
    /// stalls nothing for longer than a tick. Same limits, same isolation, same outcome.
    pub async fn on_request_async(&self, ctx: &Context, req: Request) -> Invocation<Request> {
        self.inner
            .linked
            .on_request_async(&self.limits, ctx, req)
            .await
    }

    /// [`WasmPolicy::on_response`] on the calling async task (see
    /// [`WasmPolicy::on_request_async`]).
    pub async fn on_response_async(
        &self,
        ctx: &Context,
        req: &Request,
        res: Response,
    ) -> Invocation<Response> {
        self.inner
            .linked
            .on_response_async(&self.limits, ctx, req, res)
            .await
    }

    /// The linked component (tests time its stages).
    #[cfg(test)]
    pub(crate) fn linked(&self) -> &Linked {
        &self.inner.linked
    }

    #[cfg(feature = "bench")]
    /// One instance of this policy reused for every call: the baseline benchmarks
    /// measure fresh instances against. Never what Palisade does.
    ///
    /// # Panics
    ///
    /// If the policy has no request phase or cannot be instantiated.
    pub fn reused_instance(&self) -> invocation::ReusedInstance {
        invocation::ReusedInstance::new(&self.inner.linked, &self.limits)
    }
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("name", &self.inner.name)
            .field("digest", &hex::encode(self.inner.digest))
            .field("phases", &self.phases())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn phase_export(
    component: &Component,
    interface: &str,
    func: &str,
) -> Option<ComponentExportIndex> {
    let instance = component.get_export_index(None, interface)?;
    component.get_export_index(Some(&instance), func)
}

/// A module's default name: its file name without the extension.
pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a file, refusing before reading when it is larger than `cap`.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.len() > cap {
        return Err(Error::ModuleTooLarge {
            size: meta.len(),
            limit: cap,
        });
    }
    std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

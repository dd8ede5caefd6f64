//! The gateway's TOML configuration: what the file may say, and its defaults.
//!
//! [`load`] parses a file and [`check`] validates it as a whole (every error, each with
//! its line); [`crate::Gateway`] refuses a configuration with any error. Relative paths
//! are relative to the file's directory. `docs/gateway.md` is the reference.

mod check;
pub(crate) mod de;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use self::check::{Issue, check};
pub use crate::pipeline::config::{
    FailMode, Method, Policy, Route, Runtime, Tenant, Upstream, UpstreamAuth, UpstreamClientCert,
};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Listeners and connection limits (owned by [`crate::server`]).
    pub server: crate::server::Config,
    /// Where the audit ledger lives (owned by [`crate::audit`]).
    #[serde(default)]
    pub audit: crate::audit::Config,
    /// The policy runtime.
    #[serde(default)]
    pub runtime: Runtime,
    /// Credentials: JWT issuers, token introspection, API keys (owned by
    /// [`crate::auth`]).
    #[serde(default)]
    pub auth: crate::auth::Config,
    /// The module registry (admin API uploads), owned by [`crate::registry`]. By default
    /// none.
    pub registry: Option<crate::registry::Config>,
    /// Encrypted secrets (upstream credentials), owned by [`crate::secrets`]. By default
    /// none.
    pub secrets: Option<crate::secrets::Config>,
    /// Tenants.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Spanned<Tenant>>,
    /// Upstreams.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Spanned<Upstream>>,
    /// Routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<Route>>,
    /// The directory relative paths are resolved against (the file's directory).
    #[serde(skip)]
    pub base: PathBuf,
    /// The file's text, for turning spans into line numbers.
    #[serde(skip)]
    pub source: String,
    /// The file's path, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

/// A configuration that could not be loaded: every problem found, each with its place.
#[derive(Debug, thiserror::Error)]
#[error("{}", issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Invalid {
    /// The problems, in file order.
    pub issues: Vec<Issue>,
}

impl File {
    /// Resolves `path` against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// `line:column` (1-based) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    }
}

/// Reads and parses `path`. Syntax and type errors come back with their line; the
/// semantic checks are [`check`]'s.
///
/// # Errors
///
/// [`Invalid`] with one issue when the file cannot be read or parsed.
pub fn load(path: &Path) -> Result<File, Invalid> {
    let source = std::fs::read_to_string(path).map_err(|e| Invalid {
        issues: vec![Issue::file(path, format!("cannot read: {e}"))],
    })?;
    parse(path, source)
}

/// Parses config `source` as if read from `path`.
///
/// # Errors
///
/// [`Invalid`] with one issue when `source` does not parse.
pub fn parse(path: &Path, source: String) -> Result<File, Invalid> {
    match toml::from_str::<File>(&source) {
        Ok(mut file) => {
            file.base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            file.source = source;
            file.path = path.to_path_buf();
            file.server.rebase(&file.base);
            file.audit.rebase(&file.base);
            if let Some(secrets) = &mut file.secrets {
                secrets.rebase(&file.base);
            }
            if let Some(registry) = &mut file.registry {
                registry.rebase(&file.base);
            }
            Ok(file)
        }
        Err(e) => {
            let mut file_for_pos = File::empty(path);
            file_for_pos.source = source;
            let at = e.span().map(|s| file_for_pos.position(s.start));
            Err(Invalid {
                issues: vec![Issue {
                    path: path.to_path_buf(),
                    at,
                    context: String::new(),
                    message: e.message().trim().to_string(),
                }],
            })
        }
    }
}

impl File {
    fn empty(path: &Path) -> Self {
        File {
            server: crate::server::Config::default(),
            audit: crate::audit::Config::default(),
            runtime: Runtime::default(),
            auth: crate::auth::Config::default(),
            registry: None,
            secrets: None,
            tenants: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            base: PathBuf::new(),
            source: String::new(),
            path: path.to_path_buf(),
        }
    }
}

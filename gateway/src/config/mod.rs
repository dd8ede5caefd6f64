//! The gateway's TOML configuration: what the file may say, and its defaults.
//!
//! [`load`] parses a file and [`check`] validates it as a whole (every error, each with
//! its line); [`crate::Gateway`] refuses a configuration with any error. Relative paths
//! are relative to the file's directory. `docs/gateway.md` is the reference.

mod check;
pub(crate) mod de;

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

pub use self::check::{Issue, check};
pub use crate::pipeline::config::{
    FailMode, Method, Policy, Route, Runtime, Tenant, Upstream, UpstreamAuth, UpstreamClientCert,
};

/// The whole file: each section as the subsystem that owns it types it.
#[derive(Debug, Clone)]
pub struct File {
    /// Listeners and connection limits (owned by [`crate::server`]).
    pub server: crate::server::Config,
    /// Where the audit ledger lives (owned by [`crate::audit`]).
    pub audit: crate::audit::Config,
    /// The policy runtime.
    pub runtime: Runtime,
    /// Credentials: JWT issuers, token introspection, API keys (owned by
    /// [`crate::auth`]).
    pub auth: crate::auth::Config,
    /// The module registry (admin API uploads), owned by [`crate::registry`]. By default
    /// none.
    pub registry: Option<crate::registry::Config>,
    /// Encrypted secrets (upstream credentials), owned by [`crate::secrets`]. By default
    /// none.
    pub secrets: Option<crate::secrets::Config>,
    /// Tenants (`[[tenant]]`).
    pub tenants: Vec<Spanned<Tenant>>,
    /// Upstreams (`[[upstream]]`).
    pub upstreams: Vec<Spanned<Upstream>>,
    /// Routes (`[[route]]`).
    pub routes: Vec<Spanned<Route>>,
    /// The directory relative paths are resolved against (the file's directory).
    pub base: PathBuf,
    /// The file's text, for turning spans into line numbers.
    pub source: String,
    /// The file's path, for messages.
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
        position(&self.source, offset)
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

/// Parses config `source` as if read from `path`, then lowers it: each section (and
/// each `[[tenant]]`, `[[upstream]]`, `[[route]]`) is deserialized on its own into the
/// type its subsystem owns, so that one bad entry does not hide the problems of the
/// others, and relative paths are made the file's directory's.
///
/// # Errors
///
/// [`Invalid`] with every syntax error, or else every section or entry that does not
/// deserialize, each with its `line:column`.
pub fn parse(path: &Path, source: String) -> Result<File, Invalid> {
    let mut file = File::empty(path);
    file.base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // Each problem with the span it is at, if any.
    let mut problems: Vec<Problem> = Vec::new();
    let (root, syntax) = toml::de::DeTable::parse_recoverable(&source);
    problems.extend(syntax.iter().map(|e| (e.span(), e.message().to_string())));
    if problems.is_empty() {
        let mut server = None;
        for (key, value) in root.into_inner() {
            let key_span = key.span();
            let name = key.into_inner();
            let mut keep = |p| problems.push(p);
            match name.as_ref() {
                "server" => server = lower(value).map_err(&mut keep).ok(),
                "audit" => file.audit = lower(value).map_err(keep).unwrap_or_default(),
                "runtime" => file.runtime = lower(value).map_err(keep).unwrap_or_default(),
                "auth" => file.auth = lower(value).map_err(keep).unwrap_or_default(),
                "registry" => file.registry = lower(value).map_err(keep).ok(),
                "secrets" => file.secrets = lower(value).map_err(keep).ok(),
                "tenant" => file.tenants = entries(value, &name, key_span, &mut problems),
                "upstream" => file.upstreams = entries(value, &name, key_span, &mut problems),
                "route" => file.routes = entries(value, &name, key_span, &mut problems),
                other => keep((
                    Some(key_span),
                    format!(
                        "unknown section `{other}`, expected one of `server`, `audit`, `runtime`, \
                         `auth`, `registry`, `secrets`, `tenant`, `upstream`, `route`"
                    ),
                )),
            }
        }
        match server {
            Some(s) => file.server = s,
            None if problems.is_empty() => {
                problems.push((None, "missing section `[server]`".into()));
            }
            None => {}
        }
    }
    let mut issues: Vec<Issue> = problems
        .into_iter()
        .map(|(span, message)| Issue {
            path: path.to_path_buf(),
            at: span.map(|s| position(&source, s.start)),
            context: String::new(),
            message: message.trim().to_string(),
        })
        .collect();
    file.source = source;
    if !issues.is_empty() {
        issues.sort_by_key(|i| i.at);
        return Err(Invalid { issues });
    }
    let base = file.base.clone();
    file.server.rebase(&base);
    file.audit.rebase(&base);
    file.runtime.rebase(&base);
    file.auth.rebase(&base);
    for t in &mut file.tenants {
        t.get_mut().rebase(&base);
    }
    for u in &mut file.upstreams {
        u.get_mut().rebase(&base);
    }
    for r in &mut file.routes {
        r.get_mut().rebase(&base);
    }
    if let Some(secrets) = &mut file.secrets {
        secrets.rebase(&base);
    }
    if let Some(registry) = &mut file.registry {
        registry.rebase(&base);
    }
    Ok(file)
}

/// A problem of the file: where (a byte range), and what.
type Problem = (Option<std::ops::Range<usize>>, String);

/// One section or entry as the type its subsystem owns. A problem that type finds
/// itself (an either/or choice, say) has no span of its own: it is the value's.
fn lower<T: serde::de::DeserializeOwned>(value: Spanned<DeValue<'_>>) -> Result<T, Problem> {
    let span = value.span();
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| (e.span().or(Some(span)), e.message().to_string()))
}

/// The entries of a `[[name]]` array, each lowered on its own: one bad entry does not
/// hide the others' problems.
fn entries<T: serde::de::DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    name: &str,
    key_span: std::ops::Range<usize>,
    problems: &mut Vec<Problem>,
) -> Vec<Spanned<T>> {
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| lower(item).map_err(|p| problems.push(p)).ok())
            .collect(),
        _ => {
            problems.push((
                Some(key_span),
                format!("`{name}` must be an array of tables (`[[{name}]]`)"),
            ));
            Vec::new()
        }
    }
}

/// `line:column` (1-based) of a byte offset of `source`.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        parse(Path::new("/etc/p/palisade.toml"), text.to_string())
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.issues.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_entry_is_lowered_on_its_own_and_every_problem_reported_with_its_place() {
        let text = r#"[server]
listen = "127.0.0.1:0"

[audit]
sqlite = "a.db"
postgres = "host=db"

[[route]]
name = "a"
tenant = "acme"
upstream = "up"
colour = "blue"

[[route]]
name = "b"
tenant = "acme"
upstream = "up"
methods = ["GET", "BAD METHOD"]

[[route]]
name = "c"
tenant = "acme"
upstream = "up"
timeout_ms = "soon"

[metrics]
on = true
"#;
        let found = problems(text);
        assert_eq!(found.len(), 5, "{found:#?}");
        for (n, (at, says)) in [
            ("4:1", "set `sqlite` or `postgres`, not both"),
            ("12:1", "unknown field `colour`"),
            ("18:", "method `BAD METHOD` is not an HTTP method"),
            ("24:", "invalid type"),
            ("26:2", "unknown section `metrics`"),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(
                found[n].starts_with(&format!("/etc/p/palisade.toml:{at}"))
                    && found[n].contains(says),
                "problem {n}: {:?} (want {at} {says})",
                found[n]
            );
        }
    }

    #[test]
    fn a_valid_file_is_lowered_with_its_paths_made_the_files_directorys() {
        let file = parse(
            Path::new("/etc/p/palisade.toml"),
            "[server]\nlisten = \"127.0.0.1:8080\"\n[registry]\ndir = \"mods\"\n[secrets]\nmaster_key = \"keys/m\"\n[auth]\napi_keys = \"keys.json\"\n[[tenant]]\nname = \"t\"\nclient_ca = \"/abs/ca.pem\"\nmodule_keys = [\"k.pub\"]\n[[route]]\nname = \"r\"\ntenant = \"t\"\nupstream = \"u\"\nrequest = [{ module = \"p.wasm\" }, { module = \"registry:m@1\" }]\n".into(),
        )
        .unwrap();
        assert_eq!(file.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            file.auth.api_keys.as_deref(),
            Some(Path::new("/etc/p/keys.json"))
        );
        let tenant = file.tenants[0].get_ref();
        assert_eq!(tenant.client_ca.as_deref(), Some(Path::new("/abs/ca.pem")));
        assert_eq!(tenant.module_keys, [Path::new("/etc/p/k.pub")]);
        let route = file.routes[0].get_ref();
        assert_eq!(route.request[0].module, Path::new("/etc/p/p.wasm"));
        assert_eq!(route.request[1].registry_name(), Some("m@1"));
        assert_eq!(file.registry.unwrap().dir, Path::new("/etc/p/mods"));
        assert_eq!(
            file.secrets.unwrap().master,
            crate::secrets::Master::File("/etc/p/keys/m".into())
        );
        assert_eq!(
            file.audit.store,
            palisade_ledger::Target::Sqlite("/etc/p/palisade-audit.db".into())
        );
        assert_eq!(
            problems("[audit]\n"),
            ["/etc/p/palisade.toml: missing section `[server]`"]
        );
        // Either/or choices are refused when the file is read, before anything opens.
        let both = "[server]\nlisten = \"127.0.0.1:0\"\n[[route]]\nname = \"r\"\ntenant = \"t\"\nupstream = \"u\"\nupstream_auth = { bearer = \"a\", header = \"x-key\", header_secret = \"b\" }\n";
        let found = problems(both);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("/etc/p/palisade.toml:7:17")
                && found[0].contains("set exactly one of"),
            "{found:?}"
        );
    }
}

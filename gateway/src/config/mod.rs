//! The gateway's TOML configuration: what the file may say, and its defaults.
//!
//! [`load`] parses a file, lowers each section into the type its subsystem owns and
//! [`check`]s the whole, in one pass that reports every problem with its
//! `file:line:col`; nothing is read beyond the file itself (key files, modules and the
//! database are the builders'). [`read`] is the same pass for `check-config`, which goes
//! on with whatever lowered. Relative paths are relative to the file's directory.
//! `docs/gateway.md` is the reference.

pub(crate) mod check;
pub(crate) mod de;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

pub use self::check::{Issue, check};
pub use crate::pipeline::config::{
    FailMode, FieldEncryption, Method, Policy, Route, Runtime, Tenant, Upstream, UpstreamAuth,
    UpstreamClientCert,
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
    /// Limits shared with other gateways through Redis, owned by
    /// [`crate::resilience::fleet`]. By default none.
    pub fleet: Option<crate::resilience::fleet::Config>,
    /// OpenTelemetry traces, owned by [`crate::telemetry`]. By default none.
    pub traces: Option<crate::telemetry::Config>,
    /// The gRPC listener for Envoy's ext_proc and ext_authz, owned by [`crate::envoy`].
    /// By default none.
    pub envoy: Option<crate::envoy::Config>,
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
    /// Where each key is, for messages.
    pub(crate) spans: Spans,
    /// `[[tenant]]`, `[[upstream]]` and `[[route]]` entries (`"route orders"`) that did
    /// not lower: references to them are not reported as dangling.
    pub(crate) unlowered: HashSet<String>,
}

/// Where each key and entry of the file is: `route.2.auth.schemes` -> its bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    keys: BTreeMap<String, Range<usize>>,
    /// The key of each table in an array (`route.2`, `auth.jwt.0`), by where it starts.
    entries: HashMap<usize, String>,
}

impl Spans {
    fn record_table(&mut self, key: &str, table: &toml::de::DeTable<'_>) {
        for (k, v) in table.iter() {
            let key = join(key, k.get_ref());
            self.keys.insert(key.clone(), k.span());
            self.record(&key, v);
        }
    }

    fn record(&mut self, key: &str, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Table(table) => self.record_table(key, table),
            DeValue::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    let key = format!("{key}.{n}");
                    if matches!(item.get_ref(), DeValue::Table(_)) {
                        self.entries.insert(item.span().start, key.clone());
                    }
                    self.keys.insert(key.clone(), item.span());
                    self.record(&key, item);
                }
            }
            _ => {}
        }
    }

    /// Where `field` (a dotted key, may be empty) of the entry at `entry` is, or the
    /// nearest enclosing key the file has.
    fn find(&self, entry: Option<&Range<usize>>, field: &str) -> Option<Range<usize>> {
        let base = entry.and_then(|e| self.entries.get(&e.start));
        let mut key = match base {
            Some(b) => join(b, field),
            None if entry.is_some() => return entry.cloned(),
            None => field.to_string(),
        };
        loop {
            if let Some(span) = self.keys.get(&key) {
                return Some(span.clone());
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent.to_string(),
                None => return entry.cloned(),
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{key}"),
    }
}

/// A problem a builder found in its own part of the file (a key it cannot read, a
/// module it cannot load): the entry and field it is about, for [`File::issues`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry's span (a `[[route]]`, an `[[auth.jwt]]`), or none for a section key.
    pub entry: Option<Range<usize>>,
    /// The key within the entry (or, without an entry, from the top: `auth.api_keys`).
    pub field: String,
    /// Which entry (`route "orders"`), when it is about one.
    pub context: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with `field` of the entry `at`.
    pub fn at<T>(at: &Spanned<T>, field: &str, context: String, message: String) -> Self {
        Problem {
            entry: Some(at.span()),
            field: field.into(),
            context,
            message,
        }
    }

    /// A problem with the section key `key` (`auth.api_keys`).
    pub fn key(key: &str, message: String) -> Self {
        Problem {
            entry: None,
            field: key.into(),
            context: String::new(),
            message,
        }
    }
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

    /// Builders' problems as issues of this file, each at its line.
    pub fn issues(&self, problems: Vec<Problem>) -> Vec<Issue> {
        problems
            .into_iter()
            .map(|p| Issue {
                path: self.path.clone(),
                at: self
                    .spans
                    .find(p.entry.as_ref(), &p.field)
                    .map(|s| self.position(s.start)),
                context: p.context,
                message: p.message,
            })
            .collect()
    }
}

/// Reads `path`, then [`parse`]s it.
///
/// # Errors
///
/// [`Invalid`] with every problem of the file, each with its place.
pub fn load(path: &Path) -> Result<File, Invalid> {
    match read(path) {
        (Some(file), issues) if issues.is_empty() => Ok(file),
        (_, issues) => Err(Invalid { issues }),
    }
}

/// Parses config `source` as if read from `path`, lowers it and [`check`]s it.
///
/// # Errors
///
/// [`Invalid`] with every problem, each with its `line:column`.
pub fn parse(path: &Path, source: String) -> Result<File, Invalid> {
    match read_source(path, source) {
        (Some(file), issues) if issues.is_empty() => Ok(file),
        (_, issues) => Err(Invalid { issues }),
    }
}

/// What `check-config` starts from: the file as far as it lowered (none when it cannot
/// be read or has a syntax error) and every problem found, in file order.
pub fn read(path: &Path) -> (Option<File>, Vec<Issue>) {
    match std::fs::read_to_string(path) {
        Ok(source) => read_source(path, source),
        Err(e) => (None, vec![Issue::file(path, format!("cannot read: {e}"))]),
    }
}

/// Parses `source`, lowers each section (and each `[[tenant]]`, `[[upstream]]`,
/// `[[route]]`) on its own into the type its subsystem owns, so that one bad entry does
/// not hide the problems of the others, makes relative paths the file's directory's, and
/// checks what lowered as a whole.
fn read_source(path: &Path, source: String) -> (Option<File>, Vec<Issue>) {
    let mut file = File::empty(path);
    file.base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // Each problem with the span it is at, if any.
    let mut problems: Vec<Located> = Vec::new();
    let (root, syntax) = toml::de::DeTable::parse_recoverable(&source);
    problems.extend(syntax.iter().map(|e| (e.span(), e.message().to_string())));
    let syntax_ok = problems.is_empty();
    if syntax_ok {
        file.spans.record_table("", root.get_ref());
        let mut server = None;
        for (key, value) in root.into_inner() {
            let key_span = key.span();
            let name = key.into_inner();
            let mut list = Lowering {
                problems: &mut problems,
                unlowered: &mut file.unlowered,
            };
            let mut keep = |p| list.problems.push(p);
            match name.as_ref() {
                "server" => server = lower(value).map_err(&mut keep).ok(),
                "audit" => file.audit = lower(value).map_err(keep).unwrap_or_default(),
                "runtime" => file.runtime = lower(value).map_err(keep).unwrap_or_default(),
                "auth" => file.auth = lower(value).map_err(keep).unwrap_or_default(),
                "registry" => file.registry = lower(value).map_err(keep).ok(),
                "secrets" => file.secrets = lower(value).map_err(keep).ok(),
                "fleet" => file.fleet = lower(value).map_err(keep).ok(),
                "traces" => file.traces = lower(value).map_err(keep).ok(),
                "envoy" => file.envoy = lower(value).map_err(keep).ok(),
                "tenant" => file.tenants = list.entries(value, &name, key_span),
                "upstream" => file.upstreams = list.entries(value, &name, key_span),
                "route" => file.routes = list.entries(value, &name, key_span),
                other => keep((
                    Some(key_span),
                    format!(
                        "unknown section `{other}`, expected one of `server`, `audit`, `runtime`, \
                         `auth`, `registry`, `secrets`, `fleet`, `traces`, `envoy`, `tenant`, `upstream`, `route`"
                    ),
                )),
            }
        }
        match server {
            Some(s) => file.server = s,
            None if !file.spans.keys.contains_key("server") => {
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
    if !syntax_ok {
        return (None, issues);
    }
    file.rebase();
    issues.extend(check(&file));
    issues.sort_by_key(|i| i.at);
    (Some(file), issues)
}

impl File {
    /// Makes every relative path the file's directory's.
    fn rebase(&mut self) {
        let base = self.base.clone();
        self.server.rebase(&base);
        self.audit.rebase(&base);
        self.runtime.rebase(&base);
        self.auth.rebase(&base);
        for t in &mut self.tenants {
            t.get_mut().rebase(&base);
        }
        for u in &mut self.upstreams {
            u.get_mut().rebase(&base);
        }
        for r in &mut self.routes {
            r.get_mut().rebase(&base);
        }
        if let Some(secrets) = &mut self.secrets {
            secrets.rebase(&base);
        }
        if let Some(registry) = &mut self.registry {
            registry.rebase(&base);
        }
        if let Some(fleet) = &mut self.fleet {
            fleet.rebase(&base);
        }
        if let Some(envoy) = &mut self.envoy {
            envoy.rebase(&base);
        }
    }
}

/// The keys that differ between `old` and `new` but are read only at start: `[server]`
/// (but `trusted_proxies`, `forwarded_header` and `[server.overload]`, which reloads apply), `[audit]`,
/// `[runtime]`, `[registry]`, `[secrets]` (but its master keys), `[fleet]`, `[traces]` and `[envoy]`, each named down to
/// the key under its section (`server.listen`, `server.tls`).
pub fn needs_restart(old: &File, new: &File) -> Vec<String> {
    const APPLIED: [&str; 7] = [
        "server.trusted_proxies",
        "server.forwarded_header",
        "server.overload",
        "server.body_timeout_ms",
        "secrets.master_key",
        "secrets.previous_master_keys",
        "secrets.pkcs11",
    ];
    let table = |f: &File| f.source.parse::<toml::Table>().unwrap_or_default();
    let (old, new) = (table(old), table(new));
    let mut changed = Vec::new();
    for section in [
        "server", "audit", "runtime", "registry", "secrets", "fleet", "traces", "envoy",
    ] {
        let empty = toml::Table::new();
        let key = |t: &toml::Table| match t.get(section) {
            Some(toml::Value::Table(s)) => Some(s.clone()),
            _ => None,
        };
        match (key(&old), key(&new)) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => changed.push(section.to_string()),
            (a, b) => {
                let (a, b) = (a.unwrap_or_else(|| empty.clone()), b.unwrap_or(empty));
                let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    let full = format!("{section}.{name}");
                    if a.get(name) != b.get(name) && !APPLIED.contains(&full.as_str()) {
                        changed.push(full);
                    }
                }
            }
        }
    }
    changed
}

/// A problem of the file: where (a byte range), and what.
type Located = (Option<Range<usize>>, String);

/// One section or entry as the type its subsystem owns. A problem that type finds
/// itself (an either/or choice, say) has no span of its own: it is the value's.
fn lower<T: serde::de::DeserializeOwned>(value: Spanned<DeValue<'_>>) -> Result<T, Located> {
    let span = value.span();
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| (e.span().or(Some(span)), e.message().to_string()))
}

/// Where lowered entries report: the problems, and the entries that did not lower.
struct Lowering<'a> {
    problems: &'a mut Vec<Located>,
    unlowered: &'a mut HashSet<String>,
}

impl Lowering<'_> {
    /// The entries of a `[[name]]` array, each lowered on its own: one bad entry does
    /// not hide the others' problems, and references to it are not reported as dangling.
    fn entries<T: serde::de::DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        name: &str,
        key_span: Range<usize>,
    ) -> Vec<Spanned<T>> {
        match value.into_inner() {
            DeValue::Array(items) => items
                .into_iter()
                .filter_map(|item| {
                    let entry = entry_name(&item);
                    lower(item)
                        .map_err(|p| {
                            self.problems.push(p);
                            if let Some(entry) = entry {
                                self.unlowered.insert(format!("{name} {entry}"));
                            }
                        })
                        .ok()
                })
                .collect(),
            _ => {
                self.problems.push((
                    Some(key_span),
                    format!("`{name}` must be an array of tables (`[[{name}]]`)"),
                ));
                Vec::new()
            }
        }
    }
}

/// The `name` of a table, if it has a string one.
fn entry_name(item: &Spanned<DeValue<'_>>) -> Option<String> {
    let DeValue::Table(table) = item.get_ref() else {
        return None;
    };
    table.iter().find_map(|(k, v)| match v.get_ref() {
        DeValue::String(s) if k.get_ref() == "name" => Some(s.to_string()),
        _ => None,
    })
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
            fleet: None,
            traces: None,
            envoy: None,
            tenants: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            base: PathBuf::new(),
            source: String::new(),
            path: path.to_path_buf(),
            spans: Spans::default(),
            unlowered: HashSet::new(),
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
            "[server]\nlisten = \"127.0.0.1:8080\"\n[registry]\ndir = \"mods\"\n[secrets]\nmaster_key = \"keys/m\"\n[auth]\napi_keys = \"keys.json\"\n[[tenant]]\nname = \"t\"\nclient_ca = \"/abs/ca.pem\"\nmodule_keys = [\"k.pub\"]\n[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n[[route]]\nname = \"r\"\ntenant = \"t\"\nupstream = \"u\"\nrequest = [{ module = \"p.wasm\" }, { module = \"registry:m@1\" }]\n".into(),
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
        let both = "[server]\nlisten = \"127.0.0.1:0\"\n[secrets]\nmaster_key = \"m\"\n[[tenant]]\nname = \"t\"\n[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n[[route]]\nname = \"r\"\ntenant = \"t\"\nupstream = \"u\"\nupstream_auth = { bearer = \"a\", header = \"x-key\", header_secret = \"b\" }\n";
        let found = problems(both);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("/etc/p/palisade.toml:14:17")
                && found[0].contains("set exactly one of"),
            "{found:?}"
        );
    }

    #[test]
    fn lowering_and_whole_file_problems_come_in_one_pass_each_at_its_key() {
        let text = r#"[server]
listen = "127.0.0.1:0"
max_headers = 0

[[tenant]]
name = "acme"
mandatory_pii = ["$.ok", "$[[["]

[[tenant]]
name = "broken"
colour = "blue"

[[upstream]]
name = "up"
url = "http://127.0.0.1:1"

[[route]]
name = "a"
tenant = "nobody"
upstream = "up"

[[route]]
name = "b"
tenant = "broken"
upstream = "up"
path = "/b"

[[route.redact]]
path = "$.fine"

[[route.redact]]
path = "$[[["
"#;
        let found = problems(text);
        let want = [
            ("3:1", "[server]: must be positive"),
            (
                "7:26",
                "tenant \"acme\": mandatory_pii `$[[[` is not a valid JSONPath",
            ),
            ("11:1", "unknown field `colour`"),
            ("19:1", "route \"a\": tenant \"nobody\" is not defined"),
            ("31:1", "route \"b\": redaction rule 2: invalid JSONPath"),
        ];
        assert_eq!(found.len(), want.len(), "{found:#?}");
        for (got, (at, says)) in found.iter().zip(want) {
            assert!(
                got.starts_with(&format!("/etc/p/palisade.toml:{at}: ")) && got.contains(says),
                "{got:?} (want {at} {says})"
            );
        }
    }
}

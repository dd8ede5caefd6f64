//! The compiled configuration: routes with their loaded policies, redactors and upstream
//! clients. Built whole from a checked file; swapped whole on reload.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade_runtime::{Engine, Limits, Policy};
use tokio::sync::Semaphore;

use super::io::UpstreamClient;
use super::{BodyLimits, Credential, Methods, Policies};
use crate::auth::Authenticator;
use crate::chain::{Chain, ChainPolicy};
use crate::config::{self, File, Invalid};
use crate::redaction::Redactor;
use crate::redaction::encrypt::FieldKey;
use crate::registry::Registry;
use crate::resilience::{Kept, RetryOn, RouteGuard, TenantGuard, UpstreamGuard};
use crate::secrets::SecretStore;

/// An upstream: where it is, and its shared limits (in-flight cap, breaker).
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) base: http::Uri,
    pub(crate) guard: Arc<UpstreamGuard>,
}

/// How a route retries.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) on: Vec<RetryOn>,
    pub(crate) backoff: Duration,
}

/// One route, ready to serve.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) tenant: String,
    host: Option<String>,
    prefix: String,
    strip_prefix: bool,
    pub(crate) upstream: Arc<Upstream>,
    /// The upstream's pool for this route's connect timeout.
    pub(crate) client: UpstreamClient,
    /// Per attempt, forwarding to response head.
    pub(crate) first_byte: Duration,
    /// Forwarding to the end of the response body, every attempt included.
    pub(crate) total: Duration,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) hedge: Option<crate::resilience::Hedge>,
    pub(crate) guard: Arc<RouteGuard>,
    pub(crate) tenant_guard: Option<Arc<TenantGuard>>,
    pub(crate) expose_errors: bool,
    pub(crate) permits: Arc<Semaphore>,
    /// Its chains, redaction, body limits and methods.
    pub(crate) policies: Policies,
    pub(crate) auth: Option<crate::auth::RouteAuth>,
    pub(crate) upstream_auth: Option<Credential>,
    /// Every secret some policy of this route is granted.
    pub(crate) grants: Vec<String>,
    /// The tenant's and the route's address lists.
    pub(crate) ips: super::client::IpRules,
}

impl Route {
    fn matches(&self, host: &str, path: &str, method: &http::Method) -> bool {
        let host_ok = match &self.host {
            None => true,
            // Host names are case-insensitive (RFC 4343), wildcards too.
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1
                        && host.is_char_boundary(host.len() - suffix.len())
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                        && host[..host.len() - suffix.len()].ends_with('.')
                }
                None => h.eq_ignore_ascii_case(host),
            },
        };
        host_ok
            && self.policies.methods.allows(method.as_str())
            && prefix_matches(&self.prefix, path)
    }

    /// The path sent upstream: without the route's prefix when it strips it and `path`
    /// (which a policy may have changed) still starts with it.
    pub(crate) fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        if !self.strip_prefix || !prefix_matches(&self.prefix, path) {
            return path;
        }
        let rest = &path[self.prefix.len()..];
        if rest.is_empty() { "/" } else { rest }
    }

    fn specificity(&self) -> (bool, bool, usize, bool) {
        (
            self.host.as_ref().is_some_and(|h| !h.starts_with("*.")),
            self.host.is_some(),
            self.prefix.len(),
            self.policies.methods.listed(),
        )
    }
}

/// `tenant`'s field encryption key from the secret store; a throwaway key offline
/// (`check-config` builds routes it never serves and writes nothing).
fn field_key(
    secrets: Option<&SecretStore>,
    offline: bool,
    tenant: &str,
    issue: &mut impl FnMut(&str, String),
) -> Option<Arc<FieldKey>> {
    if offline {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).expect("the OS random source is available");
        return Some(Arc::new(FieldKey::new(tenant, 1, &key)));
    }
    match secrets?.field_key(tenant) {
        Ok(k) => Some(Arc::new(k)),
        Err(e) => {
            issue("redact", format!("the data key of tenant {tenant:?}: {e}"));
            None
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A file ([`config::load`] checked it), with the credentials it configures built: what
/// routes are built from. Each is done once per load or reload.
pub(crate) struct Checked<'a> {
    file: &'a File,
    auth: Authenticator,
}

impl<'a> Checked<'a> {
    /// The file.
    pub(crate) fn file(&self) -> &'a File {
        self.file
    }

    /// Builds the [`Authenticator`] of `file`.
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every key, key file or CA that cannot be used.
    pub(crate) fn new(file: &'a File) -> Result<Self, Invalid> {
        let auth = Authenticator::build(&file.auth, &file.tenants).map_err(|problems| Invalid {
            issues: file.issues(problems),
        })?;
        Ok(Checked { file, auth })
    }

    /// `file` with no credentials: what `check-config` builds the routes with when the
    /// credentials themselves have problems (reported already), to find the routes'.
    pub(crate) fn unauthenticated(file: &'a File) -> Self {
        let auth = Authenticator::build(&crate::auth::Config::default(), &[])
            .expect("an empty configuration has nothing to load");
        Checked { file, auth }
    }
}

/// Every route, most specific first, and the credentials they are checked against.
#[derive(Debug)]
pub(crate) struct Routes {
    routes: Vec<Arc<Route>>,
    pub(crate) auth: Arc<Authenticator>,
    /// Peers whose `X-Forwarded-For`/`-Proto` are believed (`[server] trusted_proxies`).
    pub(crate) trusted_proxies: super::client::Proxies,
}

/// `host[:port]` without a numeric port.
fn without_port(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

impl Routes {
    /// The most specific route for a request: exact host before wildcard before any,
    /// then the longest path prefix, then a method list before none.
    pub(crate) fn find(&self, host: &str, path: &str, method: &http::Method) -> Option<Arc<Route>> {
        let host = without_port(host);
        self.routes
            .iter()
            .find(|r| r.matches(host, path, method))
            .cloned()
    }

    /// The route called `name` (the one another proxy chose for a request), if the
    /// request is one it matches: the other proxy's choice never takes a request past
    /// the host, path prefix and methods its route was written for.
    pub(crate) fn named(
        &self,
        name: &str,
        host: &str,
        path: &str,
        method: &http::Method,
    ) -> Option<Arc<Route>> {
        let host = without_port(host);
        self.routes
            .iter()
            .find(|r| r.name == name && r.matches(host, path, method))
            .cloned()
    }

    /// Loads every module, key and secret reference and compiles every rule of a
    /// checked `file`; resilience state comes from (and, on success, goes back to)
    /// `kept`. What `sources` does not hold (offline) is not loaded.
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every module that cannot be loaded, key file that cannot be
    /// read, secret that does not exist and rule that cannot be compiled.
    pub(crate) fn build(
        checked: Checked<'_>,
        engine: &Engine,
        sources: Sources<'_>,
        kept: &Kept,
    ) -> Result<Self, Invalid> {
        let Checked { file, auth } = checked;
        let Sources {
            registry,
            secrets,
            offline,
            check_secrets,
        } = sources;
        let mut issues: Vec<config::Problem> = Vec::new();
        let mut generation = kept.begin();
        let mut upstreams = HashMap::new();
        for su in &file.upstreams {
            let u = su.get_ref();
            let problem = |field: &str, message: String| {
                config::Problem::at(su, field, format!("upstream {:?}", u.name), message)
            };
            let Ok(base) = u.url.parse::<http::Uri>() else {
                issues.push(problem(
                    "url",
                    format!("url `{}` is not a URL", config::de::shown_url(&u.url)),
                ));
                continue;
            };
            let tls = match upstream_tls(u, secrets, offline) {
                Ok(t) => t,
                Err((field, message)) => {
                    issues.push(problem(field, message));
                    continue;
                }
            };
            let upstream = Arc::new(Upstream {
                name: u.name.clone(),
                base,
                guard: generation.upstream(u),
            });
            upstreams.insert(u.name.clone(), (upstream, tls, u));
        }
        let upstreams_named: std::collections::HashSet<&str> = file
            .upstreams
            .iter()
            .map(|u| u.get_ref().name.as_str())
            .collect();
        // One pool per upstream and connect timeout: routes with the same share it.
        let mut clients: HashMap<(String, Duration), UpstreamClient> = HashMap::new();
        let body_timeout = file.server.body_timeout;
        let tenants: HashMap<&str, &toml::Spanned<config::Tenant>> = file
            .tenants
            .iter()
            .map(|t| (t.get_ref().name.as_str(), t))
            .collect();
        // Each tenant's hash key, read once.
        let mut hash_keys: HashMap<&str, Option<Vec<u8>>> = HashMap::new();
        for (name, t) in &tenants {
            for message in crate::classification::check_labels(t.get_ref()) {
                issues.push(config::Problem::at(
                    t,
                    "label",
                    format!("tenant {name:?}"),
                    message,
                ));
            }
            let key = match &t.get_ref().hash_key_file {
                None => None,
                Some(k) => match std::fs::read(k) {
                    Ok(key) if key.len() >= 16 => Some(key),
                    Ok(_) => {
                        issues.push(config::Problem::at(
                            t,
                            "hash_key_file",
                            format!("tenant {name:?}"),
                            "hash_key_file must hold at least 16 bytes".into(),
                        ));
                        None
                    }
                    Err(e) => {
                        issues.push(config::Problem::at(
                            t,
                            "hash_key_file",
                            format!("tenant {name:?}"),
                            format!("hash_key_file {}: {e}", k.display()),
                        ));
                        None
                    }
                },
            };
            hash_keys.insert(name, key);
        }

        // Each tenant's field encryption key, fetched once, when a rule encrypts.
        let mut field_keys: HashMap<&str, Option<Arc<FieldKey>>> = HashMap::new();

        let mut loaded: HashMap<PathBuf, Policy> = HashMap::new();
        let mut routes = Vec::new();
        for sr in &file.routes {
            let r = sr.get_ref();
            let context = format!("route {:?}", r.name);
            let mut issue = |field: &str, message: String| {
                issues.push(config::Problem::at(sr, field, context.clone(), message));
            };
            let mut chain = |phase: &str, policies: &[config::Policy]| {
                let mut out = Chain::default();
                for (n, p) in policies.iter().enumerate() {
                    let field = format!("{phase}.{n}.module");
                    let sealer = if p.field_encryption == config::FieldEncryption::Off {
                        None
                    } else {
                        let key = field_keys
                            .entry(r.tenant.as_str())
                            .or_insert_with(|| field_key(secrets, offline, &r.tenant, &mut issue))
                            .clone();
                        let deterministic =
                            p.field_encryption == config::FieldEncryption::Deterministic;
                        match key {
                            Some(k) => Some(crate::redaction::encrypt::sealer(k, deterministic)),
                            None => {
                                let why = match secrets {
                                    None => "needs [secrets], where the tenant's data key is kept",
                                    Some(_) => {
                                        "the tenant's data key could not be read (see its problem)"
                                    }
                                };
                                issue(&format!("{phase}.{n}.field_encryption"), why.to_string());
                                continue;
                            }
                        }
                    };
                    if let Some(reference) = p.registry_name() {
                        let Some(registry) = registry else {
                            if !offline || file.registry.is_none() {
                                issue(
                                    &field,
                                    format!("module registry:{reference} needs a [registry]"),
                                );
                            }
                            continue;
                        };
                        match registry.load(&r.tenant, reference) {
                            Ok((module, version)) => {
                                let module = module.with_limits(limits(module.limits(), p));
                                let mut policy = ChainPolicy::new(module, config_pairs(&p.config));
                                policy.fail = p.fail;
                                policy.grants = p.secrets.clone();
                                policy.sealer = sealer;
                                policy.reference.version = version;
                                out.policies.push(policy);
                            }
                            Err(e) => issue(&field, format!("module registry:{reference}: {e}")),
                        }
                        continue;
                    }
                    let path = p.module.clone();
                    let module = match loaded.get(&path) {
                        Some(m) => m.clone(),
                        None => match Policy::from_file(engine, &path) {
                            Ok(m) => {
                                loaded.insert(path.clone(), m.clone());
                                m
                            }
                            Err(e) => {
                                issue(
                                    &field,
                                    format!("module {}: {e} [{}]", path.display(), e.kind()),
                                );
                                continue;
                            }
                        },
                    };
                    let module = module.with_limits(limits(module.limits(), p));
                    let mut policy = ChainPolicy::new(module, config_pairs(&p.config));
                    policy.fail = p.fail;
                    policy.grants = p.secrets.clone();
                    policy.sealer = sealer;
                    out.policies.push(policy);
                }
                out
            };
            let request = chain("request", &r.request);
            let response = chain("response", &r.response);
            let tenant = tenants.get(r.tenant.as_str()).map(|t| t.get_ref());
            if let Some(store) = secrets.filter(|_| check_secrets) {
                for (field, id) in secret_references(r) {
                    match store.sealed(&r.tenant, id) {
                        Ok(_) => {}
                        Err(crate::secrets::SecretError::NotFound) => issue(
                            &field,
                            format!(
                                "secret {id:?} of tenant {:?} does not exist (`palisade secret put`)",
                                r.tenant
                            ),
                        ),
                        Err(e) => issue(&field, format!("secret {id:?}: {e}")),
                    }
                }
            }
            // A route whose redaction cannot be built is not built: it would otherwise
            // serve without it.
            let key = match hash_keys.get(r.tenant.as_str()) {
                Some(None) if tenant.is_some_and(|t| t.hash_key_file.is_some()) => continue,
                Some(key) => key.clone(),
                None => None,
            };
            let redact = r.redaction(tenant);
            let encrypts = redact
                .iter()
                .any(|rule| matches!(rule.action, crate::redaction::Action::Encrypt(_)));
            let field_key = if encrypts {
                field_keys
                    .entry(r.tenant.as_str())
                    .or_insert_with(|| field_key(secrets, offline, &r.tenant, &mut issue))
                    .clone()
            } else {
                None
            };
            let redactor = if redact.is_empty() {
                None
            } else {
                match Redactor::with_keys(&redact, key.as_deref(), field_key) {
                    Ok(x) => Some(Arc::new(x)),
                    Err(e) => {
                        issues.push(config::check::redaction_problem(file, sr, &e));
                        continue;
                    }
                }
            };
            let schemas = match &r.schema {
                None => None,
                Some(c) => {
                    let strip = r.strip_prefix.then(|| r.path.trim_end_matches('/'));
                    match crate::schema::compile(c, strip) {
                        Ok(s) => Some(Arc::new(s)),
                        Err((field, message)) => {
                            issue(&format!("schema.{field}"), message);
                            continue;
                        }
                    }
                }
            };
            let classification = match crate::classification::check(r, tenant, redactor.as_deref())
            {
                Ok(c) => c.map(Arc::new),
                Err(problems) => {
                    for (field, message) in problems {
                        issue(field, message);
                    }
                    continue;
                }
            };
            let methods = Methods::new(r.methods.iter().map(|m| m.0.clone()).collect());
            let upstream_auth = r.upstream_auth.clone();
            let Some((upstream, tls, u)) = upstreams.get(&r.upstream) else {
                // Not defined, or defined but not built (its problem is reported).
                if !upstreams_named.contains(r.upstream.as_str()) {
                    issue(
                        "upstream",
                        format!("upstream {:?} is not defined", r.upstream),
                    );
                }
                continue;
            };
            let connect = r.connect_timeout.unwrap_or(u.connect_timeout);
            let client = clients
                .entry((u.name.clone(), connect))
                .or_insert_with(|| client(tls.clone(), connect, u.max_idle_connections))
                .clone();
            routes.push(Arc::new(Route {
                name: r.name.clone(),
                tenant: r.tenant.clone(),
                host: r.host.clone(),
                prefix: r.path.trim_end_matches('/').to_string(),
                strip_prefix: r.strip_prefix,
                upstream: upstream.clone(),
                client,
                first_byte: r.first_byte_timeout,
                total: r.total_timeout,
                retry: r.retry.as_ref().map(|c| RetryPolicy {
                    attempts: c.attempts,
                    on: c.on.iter().filter_map(|o| RetryOn::parse(o)).collect(),
                    backoff: c.backoff,
                }),
                hedge: r.hedge.clone(),
                guard: generation.route(r),
                tenant_guard: tenant.map(|t| generation.tenant(t)),
                expose_errors: r.expose_errors,
                permits: Arc::new(Semaphore::new(r.concurrency as usize)),
                policies: Policies {
                    request,
                    response,
                    redactor,
                    schemas,
                    classification,
                    limits: BodyLimits {
                        max_body: r.max_body_bytes,
                        max_response: r.max_response_bytes,
                        body_timeout,
                    },
                    methods,
                },
                auth: r.auth.clone(),
                upstream_auth,
                grants: r
                    .request
                    .iter()
                    .chain(&r.response)
                    .flat_map(|p| p.secrets.iter().cloned())
                    .collect(),
                ips: super::client::IpRules::new(
                    [
                        tenant.map_or(&[][..], |t| &t.allow_ips[..]),
                        &r.allow_ips[..],
                    ],
                    tenant
                        .map_or(&[][..], |t| &t.deny_ips[..])
                        .iter()
                        .chain(&r.deny_ips),
                ),
            }));
        }
        let trusted_proxies = super::client::Proxies {
            nets: file.server.trusted_proxies.iter().map(|p| p.0).collect(),
            header: file.server.forwarded_header,
        };
        if !issues.is_empty() {
            let mut issues = file.issues(issues);
            issues.sort_by_key(|i| i.at);
            return Err(Invalid { issues });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        generation.commit();
        Ok(Routes {
            routes,
            trusted_proxies,
            auth: Arc::new(auth),
        })
    }
}

/// A pooled client for one upstream and connect timeout.
fn client(tls: rustls::ClientConfig, connect: Duration, max_idle: usize) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// What a build may consult beyond the file: the registry and secret store it
/// configures, or, `offline` (`check-config --offline`), neither.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sources<'a> {
    pub(crate) registry: Option<&'a Registry>,
    pub(crate) secrets: Option<&'a SecretStore>,
    pub(crate) offline: bool,
    /// Whether the secrets routes name are looked up (the config changed).
    pub(crate) check_secrets: bool,
}

/// What in `file` names `tenant`'s secret `id`: routes (`route "orders"`) and upstreams'
/// client certificates (`upstream "payments"`).
pub fn secret_users(file: &File, tenant: &str, id: &str) -> Vec<String> {
    let routes = file
        .routes
        .iter()
        .map(|r| r.get_ref())
        .filter(|r| r.tenant == tenant && secret_references(r).iter().any(|(_, s)| *s == id));
    let upstreams = file.upstreams.iter().map(|u| u.get_ref()).filter(|u| {
        u.client_cert
            .as_ref()
            .is_some_and(|c| c.tenant == tenant && (c.cert == id || c.key == id))
    });
    routes
        .map(|r| format!("route {:?}", r.name))
        .chain(upstreams.map(|u| format!("upstream {:?}", u.name)))
        .collect()
}

/// The secrets a route names (upstream credential, policy grants), each with its key.
fn secret_references(r: &config::Route) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(c) = &r.upstream_auth {
        out.push(("upstream_auth".to_string(), c.secret()));
    }
    let phases = [("request", &r.request), ("response", &r.response)];
    for (phase, policies) in phases {
        for (n, p) in policies.iter().enumerate() {
            for (g, id) in p.secrets.iter().enumerate() {
                out.push((format!("{phase}.{n}.secrets.{g}"), id.as_str()));
            }
        }
    }
    out
}

/// TLS for an upstream: the system's roots plus `ca`, and the client certificate
/// (decrypted from the secret store) when one is configured and the store is at hand.
fn upstream_tls(
    u: &config::Upstream,
    secrets: Option<&SecretStore>,
    offline: bool,
) -> Result<rustls::ClientConfig, (&'static str, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let roots = crate::auth::introspect::trust_roots(u.ca.as_deref()).map_err(|e| ("ca", e))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ("", e.to_string()))?
    .with_root_certificates(roots);
    let Some(cc) = &u.client_cert else {
        return Ok(builder.with_no_client_auth());
    };
    let Some(store) = secrets else {
        if offline {
            return Ok(builder.with_no_client_auth());
        }
        return Err(("client_cert", "client_cert needs [secrets]".into()));
    };
    let fetch = |id: &str| {
        store.get(&cc.tenant, id).map_err(|e| {
            (
                "client_cert",
                format!("client_cert secret {id:?} of tenant {:?}: {e}", cc.tenant),
            )
        })
    };
    let (cert, key) = (fetch(&cc.cert)?, fetch(&cc.key)?);
    let chain = CertificateDer::pem_slice_iter(cert.expose())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            (
                "client_cert.cert",
                format!("client_cert {:?}: not PEM certificates: {e}", cc.cert),
            )
        })?;
    let key = PrivateKeyDer::from_pem_slice(key.expose()).map_err(|_| {
        (
            "client_cert.key",
            format!("client_cert {:?}: not a PEM private key", cc.key),
        )
    })?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| ("client_cert", format!("client_cert: {e}")))
}

fn limits(base: &Limits, p: &config::Policy) -> Limits {
    let mut l = base.clone();
    match p.fuel {
        Some(0) => l = l.unlimited_fuel(),
        Some(f) => l = l.fuel(f),
        None => {}
    }
    if let Some(m) = p.memory {
        l = l.memory(m);
    }
    if let Some(t) = p.timeout {
        l = l.timeout(t);
    }
    l
}

/// TOML config values as the strings policies read: strings and dates as they are,
/// numbers, booleans and arrays as JSON.
fn config_pairs(config: &std::collections::BTreeMap<String, toml::Value>) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            (k.clone(), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::OnceLock;

    use super::*;
    use crate::metrics::Metrics;

    fn engine() -> &'static Engine {
        static ENGINE: OnceLock<Engine> = OnceLock::new();
        ENGINE.get_or_init(|| Engine::new(&palisade_runtime::Config::new()).expect("an engine"))
    }

    /// Routes `exact` (host `api.example.com`), `wildcard` (`*.example.com`) and `any`
    /// (no host), all at `/`, built from a file as the gateway builds them.
    fn routes() -> Routes {
        let text = r#"
[server]
listen = "127.0.0.1:0"

[[tenant]]
name = "acme"

[[upstream]]
name = "up"
url = "http://127.0.0.1:9"

[[route]]
name = "any"
tenant = "acme"
upstream = "up"

[[route]]
name = "wildcard"
tenant = "acme"
upstream = "up"
host = "*.example.com"

[[route]]
name = "exact"
tenant = "acme"
upstream = "up"
host = "api.example.com"
"#;
        let file = config::parse(Path::new("routes.toml"), text.into()).expect("parses");
        let checked = Checked::new(&file).expect("checks");
        let kept = Kept::new(Arc::new(Metrics::new()), None);
        Routes::build(checked, engine(), Sources::default(), &kept).expect("builds")
    }

    /// The name of the route `find` picks for `host`, if any.
    fn route_for(routes: &Routes, host: &str) -> Option<String> {
        routes
            .find(host, "/", &http::Method::GET)
            .map(|r| r.name.clone())
    }

    #[test]
    fn an_exact_host_wins_over_a_wildcard_and_a_wildcard_over_any_host() {
        let routes = routes();
        assert_eq!(
            route_for(&routes, "api.example.com").as_deref(),
            Some("exact")
        );
        assert_eq!(
            route_for(&routes, "www.example.com").as_deref(),
            Some("wildcard")
        );
        assert_eq!(route_for(&routes, "other.test").as_deref(), Some("any"));
    }

    #[test]
    fn a_wildcard_matches_subdomains_only() {
        let routes = routes();
        for (host, route) in [
            ("a.b.example.com", "wildcard"),
            ("example.com", "any"),
            ("badexample.com", "any"),
            (".example.com", "any"),
        ] {
            assert_eq!(route_for(&routes, host).as_deref(), Some(route), "{host}");
        }
    }

    #[test]
    fn the_port_is_not_part_of_the_host() {
        let routes = routes();
        for (host, route) in [
            ("api.example.com:8080", "exact"),
            ("www.example.com:443", "wildcard"),
            ("example.com:80", "any"),
        ] {
            assert_eq!(route_for(&routes, host).as_deref(), Some(route), "{host}");
        }
    }

    #[test]
    fn a_wildcard_matches_in_any_case() {
        let routes = routes();
        for host in ["WWW.EXAMPLE.COM", "www.Example.com:443"] {
            assert_eq!(
                route_for(&routes, host).as_deref(),
                Some("wildcard"),
                "{host}"
            );
        }
    }

    #[test]
    fn an_exact_host_matches_in_any_case() {
        let routes = routes();
        for host in ["API.EXAMPLE.COM", "Api.Example.Com:8080"] {
            assert_eq!(route_for(&routes, host).as_deref(), Some("exact"), "{host}");
        }
    }

    #[test]
    fn a_prefix_matches_on_segment_boundaries_only() {
        for (prefix, path, matches) in [
            ("", "/anything", true),
            ("/api", "/api", true),
            ("/api", "/api/", true),
            ("/api", "/api/v1", true),
            ("/api", "/apiv1", false),
            ("/api", "/ap", false),
            ("/api/v1", "/api", false),
        ] {
            assert_eq!(prefix_matches(prefix, path), matches, "{prefix:?} {path:?}");
        }
    }
}

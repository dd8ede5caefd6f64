//! What `[runtime]`, `[[tenant]]`, `[[upstream]]` and `[[route]]` may say: the config
//! the routes are built from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::de::{millis, rebase};

/// An HTTP method as a route lists it (any case; `get` is `GET`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Method(pub http::Method);

impl TryFrom<String> for Method {
    type Error = String;

    fn try_from(m: String) -> Result<Self, String> {
        http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map(Method)
            .map_err(|_| format!("method `{m}` is not an HTTP method"))
    }
}

/// An optional `*_ms` key.
fn some_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    millis(d).map(Some)
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Policy invocations running at once (each on a blocking thread). By default 64.
    #[serde(default = "d::policy_concurrency")]
    pub concurrency: usize,
    /// Where compiled modules are cached. By default `.palisade-cache` beside the file.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            concurrency: d::policy_concurrency(),
            cache_dir: None,
        }
    }
}

impl Runtime {
    /// Makes `cache_dir` relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &std::path::Path) {
        if let Some(dir) = &mut self.cache_dir {
            *dir = rebase(base, dir);
        }
    }
}

impl Tenant {
    /// Makes the key and CA file paths relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &std::path::Path) {
        for p in [&mut self.hash_key_file, &mut self.client_ca]
            .into_iter()
            .flatten()
        {
            *p = rebase(base, p);
        }
        for p in &mut self.module_keys {
            *p = rebase(base, p);
        }
    }
}

impl Upstream {
    /// Makes `ca` relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &std::path::Path) {
        if let Some(ca) = &mut self.ca {
            *ca = rebase(base, ca);
        }
    }
}

impl Route {
    /// Makes the policies' module files relative to `base` (the config file's
    /// directory); `registry:` references stay as they are.
    pub fn rebase(&mut self, base: &std::path::Path) {
        for p in self.request.iter_mut().chain(&mut self.response) {
            if p.registry_name().is_none() {
                p.module = rebase(base, &p.module);
            }
        }
        if let Some(schema) = &mut self.schema {
            schema.rebase(base);
        }
    }
}

/// `[[tenant]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant's name.
    pub name: String,
    /// JSONPaths every route of this tenant must redact (see `docs/gateway.md`).
    #[serde(default)]
    pub mandatory_pii: Vec<String>,
    /// Response headers every route of this tenant must redact (a `header` rule each),
    /// e.g. `["set-cookie"]`.
    #[serde(default)]
    pub mandatory_headers: Vec<String>,
    /// A file holding the key for `hash` redaction (at least 16 bytes).
    pub hash_key_file: Option<PathBuf>,
    /// Built-in redaction rules for every route of this tenant, applied before the
    /// route's own.
    #[serde(default)]
    pub redact: Vec<crate::redaction::Rule>,
    /// PEM CA certificates that issue this tenant's client certificates (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Public keys (`palisade keygen` `.pub` files) trusted to sign this tenant's modules.
    #[serde(default)]
    pub module_keys: Vec<PathBuf>,
    /// Refuse unsigned modules at upload and at load. By default `false`.
    #[serde(default)]
    pub require_signed_modules: bool,
    /// Requests per second for all of this tenant's routes together (429 with
    /// `Retry-After` beyond). By default unlimited.
    pub rate_limit: Option<crate::resilience::RateLimit>,
    /// Requests of this tenant in the pipeline at once; more get 429 with
    /// `Retry-After`. By default unlimited.
    pub max_in_flight: Option<u32>,
    /// Fuel per second this tenant's policies may burn (Wasm fuel, Luau ticks); a
    /// tenant over budget gets 429 on routes with policies until it is paid back. By
    /// default unlimited.
    pub fuel_per_s: Option<u64>,
    /// Client addresses (IP or CIDR, IPv4 or IPv6) this tenant's routes accept; any
    /// other gets 403 `ip_refused` before authentication. By default any.
    #[serde(default)]
    pub allow_ips: Vec<crate::server::Cidr>,
    /// Client addresses this tenant's routes refuse (403 `ip_refused`), whatever the
    /// allow lists say.
    #[serde(default)]
    pub deny_ips: Vec<crate::server::Cidr>,
    /// Data classification labels of this tenant's own (`[[tenant.label]]`).
    #[serde(default, rename = "label")]
    pub labels: Vec<crate::classification::CustomLabel>,
}

/// `[[upstream]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The upstream's name.
    pub name: String,
    /// Base URL, `http://host:port` (a path prefix is allowed).
    pub url: String,
    /// Time allowed to connect (`connect_timeout_ms`). By default 2 s.
    #[serde(
        rename = "connect_timeout_ms",
        default = "d::connect_timeout",
        deserialize_with = "millis"
    )]
    pub connect_timeout: Duration,
    /// Extra PEM CA certificates trusted for an `https://` upstream (besides the
    /// system's).
    pub ca: Option<PathBuf>,
    /// A client certificate presented to an `https://` upstream (mTLS), from `[secrets]`.
    pub client_cert: Option<UpstreamClientCert>,
    /// Requests to this upstream in flight at once, all routes together (its own pool:
    /// one slow upstream cannot take another's capacity). More wait up to
    /// `queue_timeout_ms`, then get 503 `upstream_saturated`. By default 256.
    #[serde(default = "d::upstream_max_in_flight")]
    pub max_in_flight: u32,
    /// How long a request waits for a free slot of `max_in_flight`
    /// (`queue_timeout_ms`). By default 0 (none).
    #[serde(rename = "queue_timeout_ms", default, deserialize_with = "millis")]
    pub queue_timeout: Duration,
    /// Idle connections kept for reuse. By default 64.
    #[serde(default = "d::max_idle")]
    pub max_idle_connections: usize,
    /// The circuit breaker.
    #[serde(default)]
    pub breaker: crate::resilience::BreakerConfig,
}

/// `[upstream.client_cert]`: the certificate chain and private key (PEM), each a secret
/// of `tenant`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamClientCert {
    /// The tenant whose secrets hold them.
    pub tenant: String,
    /// The secret holding the PEM certificate chain.
    pub cert: String,
    /// The secret holding the PEM private key.
    pub key: String,
}

/// `fail`: what a policy error does to the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// The request fails (500 before the upstream, 502 after); the default.
    #[default]
    Closed,
    /// The policy is skipped and the request goes on (request policies only).
    Open,
}

/// `field_encryption` on a policy entry: whether the policy may seal fields with the
/// tenant's data key, and in which modes. `true` is `"randomized"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "FieldEncryptionWritten")]
pub enum FieldEncryption {
    /// `seal` fails (the default).
    #[default]
    Off,
    /// Randomized tokens only: the policy learns nothing from the tokens it makes.
    Randomized,
    /// Deterministic tokens too. Equal values give equal tokens, so the policy can test a
    /// guess against a token it sees: grant it only to policies trusted with the values.
    Deterministic,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FieldEncryptionWritten {
    Flag(bool),
    Mode(FieldEncryptionMode),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum FieldEncryptionMode {
    Randomized,
    Deterministic,
}

impl From<FieldEncryptionWritten> for FieldEncryption {
    fn from(w: FieldEncryptionWritten) -> Self {
        match w {
            FieldEncryptionWritten::Flag(false) => FieldEncryption::Off,
            FieldEncryptionWritten::Flag(true)
            | FieldEncryptionWritten::Mode(FieldEncryptionMode::Randomized) => {
                FieldEncryption::Randomized
            }
            FieldEncryptionWritten::Mode(FieldEncryptionMode::Deterministic) => {
                FieldEncryption::Deterministic
            }
        }
    }
}

/// `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The route's name (in metrics and the audit ledger).
    pub name: String,
    /// The tenant that owns the route.
    pub tenant: String,
    /// The upstream requests go to.
    pub upstream: String,
    /// Host to match (`api.example.com` or `*.example.com`); by default any.
    pub host: Option<String>,
    /// Path prefix to match, on segment boundaries. By default `/`.
    #[serde(default = "d::path")]
    pub path: String,
    /// Methods to match (any case); by default any.
    #[serde(default)]
    pub methods: Vec<Method>,
    /// Remove the matched prefix before forwarding. By default `false`.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Largest request body, bytes. By default 1 MiB.
    #[serde(default = "d::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Largest upstream response body when policies or redaction must read it. By
    /// default 8 MiB.
    #[serde(default = "d::max_response_bytes")]
    pub max_response_bytes: u64,
    /// Requests in flight on this route; more get 503 with `Retry-After`. By default 256.
    #[serde(default = "d::route_concurrency")]
    pub concurrency: u32,
    /// Time from forwarding to the end of the upstream's response head (first byte),
    /// per attempt (`timeout_ms`, also spelled `first_byte_timeout_ms`). By default 30 s.
    #[serde(
        rename = "timeout_ms",
        alias = "first_byte_timeout_ms",
        default = "d::first_byte_timeout",
        deserialize_with = "millis"
    )]
    pub first_byte_timeout: Duration,
    /// Time to connect to the upstream for this route (`connect_timeout_ms`); by default
    /// the upstream's.
    #[serde(
        rename = "connect_timeout_ms",
        default,
        deserialize_with = "some_millis"
    )]
    pub connect_timeout: Option<Duration>,
    /// Time from forwarding to the end of the upstream's response body, retries and
    /// hedges included; a streamed body is cut there (`total_timeout_ms`). By default
    /// 120 s.
    #[serde(
        rename = "total_timeout_ms",
        default = "d::total_timeout",
        deserialize_with = "millis"
    )]
    pub total_timeout: Duration,
    /// Retries of idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, TRACE). By
    /// default none.
    pub retry: Option<crate::resilience::Retry>,
    /// Hedged requests for idempotent requests. By default none.
    pub hedge: Option<crate::resilience::Hedge>,
    /// Requests per second on this route (429 with `Retry-After` beyond). By default
    /// unlimited.
    pub rate_limit: Option<crate::resilience::RateLimit>,
    /// Put the guest's or upstream's error text in error bodies. By default `false`.
    #[serde(default)]
    pub expose_errors: bool,
    /// Request policies, in order.
    #[serde(default)]
    pub request: Vec<Policy>,
    /// Response policies, in order.
    #[serde(default)]
    pub response: Vec<Policy>,
    /// Built-in redaction rules, applied after the response policies.
    #[serde(default)]
    pub redact: Vec<crate::redaction::Rule>,
    /// JSON Schemas the request and response bodies must satisfy (`[route.schema]`).
    pub schema: Option<crate::schema::Config>,
    /// The route's data classification label (`public`, `internal`, `confidential`,
    /// `restricted` or one of its tenant's); its handling rules are checked at load.
    pub classification: Option<String>,
    /// Labels of JSONPaths in the response body (`{ path, label }`).
    #[serde(default)]
    pub classify: Vec<crate::classification::Classify>,
    /// Who may call this route. By default anyone (no credentials checked).
    pub auth: Option<crate::auth::RouteAuth>,
    /// Credentials the gateway adds to requests it sends upstream, from `[secrets]`:
    /// exactly one form (refused at load otherwise).
    pub upstream_auth: Option<super::Credential>,
    /// Client addresses (IP or CIDR) this route accepts, besides its tenant's list; any
    /// other gets 403 `ip_refused` before authentication. By default any.
    #[serde(default)]
    pub allow_ips: Vec<crate::server::Cidr>,
    /// Client addresses this route refuses (403 `ip_refused`).
    #[serde(default)]
    pub deny_ips: Vec<crate::server::Cidr>,
}

/// `[route.upstream_auth]`: exactly one of a bearer token, basic auth, or a header, each
/// naming a secret of the route's tenant. Policies never see these values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuth {
    /// `Authorization: Bearer <secret>`.
    pub bearer: Option<String>,
    /// The user for `Authorization: Basic` (not a secret).
    pub basic_user: Option<String>,
    /// The secret holding the basic-auth password.
    pub basic_password: Option<String>,
    /// A header name, e.g. `x-api-key`, set to `header_secret`.
    pub header: Option<String>,
    /// The secret for `header`.
    pub header_secret: Option<String>,
}

/// A policy in a chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A Wasm component (`.wasm`), a Luau script (`.lua`), or `registry:NAME[@VERSION]`
    /// (the route's tenant's active or pinned registry version).
    pub module: PathBuf,
    /// Config handed to the policy (`host.config(key)`).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Fuel per invocation; by default the runtime's (1e9). `0` means unlimited.
    pub fuel: Option<u64>,
    /// Memory per invocation, bytes; by default the runtime's (64 MiB).
    pub memory: Option<u64>,
    /// Wall-clock limit per invocation (`timeout_ms`); by default the runtime's (1 s).
    #[serde(rename = "timeout_ms", default, deserialize_with = "some_millis")]
    pub timeout: Option<Duration>,
    /// What an error does. By default `closed`; `open` only for request policies.
    #[serde(default)]
    pub fail: FailMode,
    /// Secrets of the route's tenant this policy may read (as config `secret.<id>`).
    /// By default none: policies see no secret unless granted here.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Whether this policy may seal fields with the tenant's data key (the host's
    /// `seal`, Lua's `palisade.seal`): `true` (randomized tokens) or `"deterministic"`
    /// (both modes); needs `[secrets]`. Off by default: `seal` fails.
    #[serde(default)]
    pub field_encryption: FieldEncryption,
}

mod d {
    use std::time::Duration;

    use crate::pipeline::BodyLimits;

    pub(super) fn policy_concurrency() -> usize {
        palisade_runtime::InvocationPool::DEFAULT_CONCURRENCY
    }
    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn path() -> String {
        "/".into()
    }
    pub(super) fn max_body_bytes() -> u64 {
        BodyLimits::default().max_body
    }
    pub(super) fn max_response_bytes() -> u64 {
        BodyLimits::default().max_response
    }
    pub(super) fn route_concurrency() -> u32 {
        256
    }
    pub(super) fn first_byte_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn upstream_max_in_flight() -> u32 {
        256
    }
    pub(super) fn max_idle() -> usize {
        64
    }
    pub(super) fn total_timeout() -> Duration {
        Duration::from_secs(120)
    }
}

impl Policy {
    /// `NAME` or `NAME@VERSION` when the module is `registry:...` (a registry module of
    /// the route's tenant).
    pub fn registry_name(&self) -> Option<&str> {
        self.module
            .to_str()
            .and_then(|s| s.strip_prefix("registry:"))
    }
}

impl Route {
    /// The redaction rules that apply to this route: its tenant's, then its own.
    pub fn redaction(&self, tenant: Option<&Tenant>) -> Vec<crate::redaction::Rule> {
        tenant
            .map(|t| t.redact.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(&self.redact)
            .cloned()
            .collect()
    }
}

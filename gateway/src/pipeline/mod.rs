//! The request pipeline: named phases over one `Exchange`, in this order (the table of
//! what each returns is `docs/gateway.md`, "The pipeline"):
//!
//! 1. admit: correlation id, normalized path, host, pending audit block (`Exchange::begin`);
//! 2. route (`Pipeline::route`);
//! 3. limits: load shedding and the route's concurrency (`Pipeline::admit`);
//! 4. client addresses: the tenant's and route's allow and deny lists (`IpRules::check`);
//! 5. authenticate (`authenticate`);
//! 6. bind tenant: tenant and route limits, the caller's headers (`bind_tenant`);
//! 7. read body (`Policies::read_body`);
//! 8. request policies (`Policies::on_request`);
//! 9. upstream (`Pipeline::upstream`);
//! 10. response policies, then redact (`Policies::on_response`);
//! 11. audit and respond (`Exchange::finish`).
//!
//! [`Pipeline::handle`] runs them for `palisade serve`; [`crate::PolicyLayer`] runs 1, 7, 8,
//! 10 and 11 around an inner service that stands where the upstream does. Headers and
//! HTTP/1.1 parse limits (431) and the header read timeout are enforced by the connection
//! before the pipeline runs; see [`crate::server`].

pub(crate) mod client;
pub mod config;
mod credentials;
pub(crate) mod envoy;
pub(crate) mod exchange;
pub(crate) mod forward;
pub(crate) mod io;
mod policies;
mod routes;
pub(crate) mod target;
mod upstream;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt as _;
use http::StatusCode;
use palisade_ledger::{Ledger, Record};
use palisade_runtime::{Context, Engine, InvocationPool, Request};

pub use self::client::ForwardedHeader;
pub use self::credentials::Credential;
use self::exchange::Exchange;
pub use self::exchange::Verdict;
pub use self::exchange::new_id;
use self::forward::Target;
pub(crate) use self::io::ResponseDeadline;
pub use self::policies::BodyLimits;
pub(crate) use self::policies::{Methods, Next, Outcome, Policies, Scope, request_of};
pub use self::routes::secret_users;
pub(crate) use self::routes::{Checked, Route, Routes, Sources};
use crate::auth::{Authenticator, Caller, ClientCertificate, mtls::ReloadableVerifier};
use crate::body::Body;
use crate::chain::Observer;
pub(crate) use crate::chain::POLICY_INVALID_OUTPUT;
use crate::config::{File, Invalid, Issue, Problem};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::resilience::{Kept, Shedder, retry_after};
use crate::telemetry::{Telemetry, Trust};

/// Runs a phase (`$e`, a `Result`), giving it a child span `$name` when the request's
/// trace records; otherwise only an `Option` is looked at.
macro_rules! phase {
    ($ex:expr, $name:literal, $e:expr) => {{
        let start = $ex.spans.as_ref().and_then(|s| s.clock());
        let result = $e;
        if let (Some(spans), Some(start)) = (&$ex.spans, start) {
            let error = result.as_ref().err().map(Error::cause);
            spans.child($name, start, Vec::new(), error);
        }
        result
    }};
}
use crate::secrets::SecretStore;

/// The pipeline: routes (swapped on reload), the policy runtime, the ledger and metrics.
pub struct Pipeline {
    routes: ArcSwap<Routes>,
    engine: Engine,
    pool: InvocationPool,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    client_verifier: Arc<ReloadableVerifier>,
    registry: Option<Arc<Registry>>,
    secrets: Option<Arc<SecretStore>>,
    shedder: Arc<Shedder>,
    kept: Kept,
    /// The tracer, with `[traces]`.
    telemetry: Option<Arc<Telemetry>>,
    /// The file the routes were built from, for rebuilds after registry changes.
    file: std::sync::Mutex<File>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// What a reload did not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys that changed but are read only at start (`server.listen`, `audit.sqlite`):
    /// the running values stay until a restart.
    pub needs_restart: Vec<String>,
}

impl Pipeline {
    /// Builds the pipeline from a checked config file.
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every problem in `file`.
    pub fn new(
        file: &File,
        engine: Engine,
        ledger: Arc<Ledger>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Invalid> {
        Self::from_checked(Checked::new(file)?, engine, ledger, metrics)
    }

    /// Builds the pipeline from a file [`Checked::new`] has checked.
    pub(crate) fn from_checked(
        checked: Checked<'_>,
        engine: Engine,
        ledger: Arc<Ledger>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Invalid> {
        let file = checked.file();
        let registry = Registry::from_file(file, &engine)
            .map_err(|issues| Invalid { issues })?
            .map(Arc::new);
        let secrets = SecretStore::from_file(file)
            .map_err(|issues| Invalid { issues })?
            .map(Arc::new);
        let fleet = crate::resilience::fleet::from_file(file, secrets.as_deref(), &metrics)
            .map_err(|issues| Invalid { issues })?;
        let kept = Kept::new(metrics.clone(), fleet);
        let telemetry = match &file.traces {
            None => None,
            Some(cfg) => Some(Telemetry::new(cfg).map_err(|e| Invalid {
                issues: file.issues(vec![Problem::key("traces", e)]),
            })?),
        };
        let file = file.clone();
        let sources = Sources {
            registry: registry.as_deref(),
            secrets: secrets.as_deref(),
            offline: false,
            check_secrets: true,
        };
        let routes = Routes::build(checked, &engine, sources, &kept)?;
        Ok(Pipeline {
            shedder: Arc::new(Shedder::new(&file.server.overload, metrics.clone())),
            kept,
            registry,
            secrets,
            client_verifier: Arc::new(ReloadableVerifier::new(routes.auth.client_verifier())),
            routes: ArcSwap::from_pointee(routes),
            pool: InvocationPool::new(file.runtime.concurrency.max(1)),
            file: std::sync::Mutex::new(file),
            engine,
            ledger,
            metrics,
            telemetry,
        })
    }

    /// Replaces the routes (and the credentials, the master keys, overload settings and
    /// trusted proxies) with those of `file`. Requests in flight finish on the routes
    /// they started with; new requests see the new ones. Nothing changes on error; what
    /// changed but is read only at start is named in [`Reloaded::needs_restart`].
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every problem in `file`.
    pub fn reload(&self, file: &File) -> Result<Reloaded, Invalid> {
        self.swap(file, true)
    }

    /// Builds `file`'s routes and swaps them in. A config reload (`from_config`) also
    /// takes its master keys and checks the secrets its routes name; a registry
    /// rebuild does neither (the config did not change, and one tenant's missing
    /// secret must not hold back another tenant's activation).
    fn swap(&self, file: &File, from_config: bool) -> Result<Reloaded, Invalid> {
        let checked = Checked::new(file)?;
        let mut current = self.file.lock().expect("pipeline file lock");
        // The master keys first: the routes' secrets are read with them.
        let held_keys = match (&self.secrets, &file.secrets) {
            _ if !from_config => None,
            (Some(store), Some(config)) => {
                Some(store.reload_keys(config).map_err(|e| Invalid {
                    issues: file.issues(vec![Problem::key("secrets", format!("[secrets] {e}"))]),
                })?)
            }
            _ => None,
        };
        let restore_keys = || {
            if let (Some(store), Some(keys)) = (&self.secrets, held_keys.clone()) {
                store.restore_keys(keys);
            }
        };
        if let Some(registry) = &self.registry {
            if let Err(issues) = registry.set_trust(file) {
                restore_keys();
                return Err(Invalid { issues });
            }
            // Another gateway sharing the database may have activated versions.
            if let Err(e) = registry.refresh_active() {
                tracing::warn!(error = %e, "registry not readable; using the last known versions");
            }
        }
        let sources = Sources {
            registry: self.registry.as_deref(),
            secrets: self.secrets.as_deref(),
            offline: false,
            check_secrets: from_config,
        };
        let routes = match Routes::build(checked, &self.engine, sources, &self.kept) {
            Ok(r) => r,
            Err(e) => {
                // The old trust stays with the old routes.
                if let Some(registry) = &self.registry {
                    let _ = registry.set_trust(&current);
                }
                restore_keys();
                return Err(e);
            }
        };
        self.client_verifier.set(routes.auth.client_verifier());
        self.shedder.set(&file.server.overload);
        self.routes.store(Arc::new(routes));
        let needs_restart = crate::config::needs_restart(&current, file);
        *current = file.clone();
        Ok(Reloaded { needs_restart })
    }

    /// Rebuilds the routes from the current file (after a registry activation): new
    /// requests use the newly active versions, requests in flight finish on theirs.
    ///
    /// # Errors
    ///
    /// [`Invalid`] when a route can no longer be built; the old routes stay.
    pub fn rebuild(&self) -> Result<(), Invalid> {
        let file = self.file.lock().expect("pipeline file lock").clone();
        self.swap(&file, false).map(drop)
    }

    /// Whether `ip` is one of the trusted proxies of the configuration in service.
    pub(crate) fn trusts_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.routes
            .load()
            .trusted_proxies
            .trusts(&forward::canonical(ip))
    }

    /// The secret store, when `[secrets]` is configured.
    pub fn secrets(&self) -> Option<&Arc<SecretStore>> {
        self.secrets.as_ref()
    }

    /// The module registry, when `[registry]` is configured.
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.as_ref()
    }

    /// Whether a route of `tenant` pins registry module `name` at `version`.
    pub fn pins(&self, tenant: &str, name: &str, version: &str) -> bool {
        let pinned = format!("{name}@{version}");
        let file = self.file.lock().expect("pipeline file lock");
        file.routes.iter().any(|r| {
            let r = r.get_ref();
            r.tenant == tenant
                && r.request
                    .iter()
                    .chain(&r.response)
                    .any(|p| p.registry_name() == Some(pinned.as_str()))
        })
    }

    /// The configuration in service.
    pub fn file(&self) -> File {
        self.file.lock().expect("pipeline file lock").clone()
    }

    /// Whether `tenant` is configured.
    pub fn has_tenant(&self, tenant: &str) -> bool {
        let file = self.file.lock().expect("pipeline file lock");
        file.tenants.iter().any(|t| t.get_ref().name == tenant)
    }

    /// What the routes in service name `tenant`'s secret `id` with (`route "orders"`).
    pub fn secret_users(&self, tenant: &str, id: &str) -> Vec<String> {
        let file = self.file.lock().expect("pipeline file lock");
        routes::secret_users(&file, tenant, id)
    }

    /// The TLS client-certificate verifier for listeners serving this pipeline: every
    /// tenant's `client_ca`, following reloads.
    pub fn client_cert_verifier(&self) -> Arc<dyn rustls::server::danger::ClientCertVerifier> {
        self.client_verifier.clone()
    }

    /// The credentials of the current configuration (for the admin API).
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.routes.load().auth.clone()
    }

    /// The metrics this pipeline reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sends the trace spans still queued to the collector and stops exporting, with
    /// `[traces]`; blocks until it answered or the export timed out (call it off the
    /// async threads, at shutdown).
    pub fn shutdown_traces(&self) {
        if let Some(t) = &self.telemetry {
            t.shutdown();
        }
    }

    /// The ledger this pipeline audits to.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Runs every phase for one request and returns the response to send. Never fails:
    /// each error becomes its status and safe body, and every request gets an audit block.
    ///
    /// A [`ClientCertificate`] in the request's extensions is the caller's TLS client
    /// certificate (the gateway's own listener puts it there).
    pub async fn handle<B>(&self, req: http::Request<B>, peer: SocketAddr) -> http::Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    {
        let mut ex = Exchange::begin(&req, Some(self.ledger.clone()));
        self.trace(&mut ex, req.headers(), peer);
        let routes = self.routes.load_full();
        let result = match phase!(ex, "route", self.route(&routes, &mut ex, req.method())) {
            Ok(route) => {
                // A panic in any phase fails this request only; it still gets its block.
                let run = AssertUnwindSafe(self.proxy(&routes, &route, &mut ex, req, peer));
                run.catch_unwind().await.unwrap_or(Err(Error::Internal))
            }
            Err(e) => Err(e),
        };
        ex.finish(result, Some(&self.metrics)).await
    }

    /// The phases after routing, in order.
    async fn proxy<B>(
        &self,
        routes: &Routes,
        route: &Route,
        ex: &mut Exchange,
        req: http::Request<B>,
        peer: SocketAddr,
    ) -> Result<Outcome, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    {
        let (parts, body) = req.into_parts();
        let head = self.head(routes, route, ex, parts, peer).await?;
        let body = phase!(ex, "read_body", route.policies.read_body(body).await)?;
        let (scope, request) = match self.request_phases(route, ex, &head, body).await? {
            (scope, Next::Forward(request)) => (scope, request),
            (_, Next::Respond(answer)) => return Ok(answer),
        };
        let origin = &head.bound.origin;
        let (response, deadline) = match self.upstream(route, ex, &request, origin).await? {
            Answer::Streamed(response) => return Ok(Outcome::allowed(response)),
            Answer::Read(response, deadline) => (response, deadline),
        };
        let mut outcome = phase!(
            ex,
            "response_policies",
            route
                .policies
                .on_response(&scope, request, response, &mut ex.trace)
                .await
        )?;
        outcome
            .response
            .extensions_mut()
            .insert(ResponseDeadline(deadline));
        Ok(outcome)
    }

    /// The phases on the request's head, in order: admit (limits), client addresses,
    /// authenticate, bind tenant. What they hold (admission, the tenant's slot) is
    /// held by the [`Head`] until the request ends.
    pub(crate) async fn head(
        &self,
        routes: &Routes,
        route: &Route,
        ex: &mut Exchange,
        parts: http::request::Parts,
        peer: SocketAddr,
    ) -> Result<Head, Error> {
        if let Some(label) = route
            .policies
            .classification
            .as_ref()
            .and_then(|c| c.route_label())
        {
            ex.trace
                .detail
                .insert("classification".into(), label.name.clone().into());
        }
        let admitted = phase!(ex, "admit", self.admit(route))?;
        let caller = phase!(ex, "auth", {
            match route
                .ips
                .check(&parts.headers, peer, &routes.trusted_proxies)
            {
                Ok(()) => authenticate(routes, route, ex, &parts).await,
                Err(e) => Err(e),
            }
        })?;
        let bound = phase!(
            ex,
            "bind_tenant",
            bind_tenant(routes, route, ex, parts, caller.as_ref(), peer).await
        )?;
        Ok(Head {
            _admitted: Box::new(admitted),
            caller,
            bound,
        })
    }

    /// The phases on the request as read: schema, request policies. What the policies
    /// run with comes back too, for the response phases.
    pub(crate) async fn request_phases(
        &self,
        route: &Route,
        ex: &mut Exchange,
        head: &Head,
        body: bytes::Bytes,
    ) -> Result<(Scope<'_>, Next), Error> {
        let scope = self.scope(route, ex, head.caller.as_ref()).await?;
        let request = policies::request_of(&head.bound.parts, head.bound.path.clone(), body);
        let next = phase!(
            ex,
            "request_policies",
            route
                .policies
                .on_request(&scope, request, &mut ex.trace)
                .await
        )?;
        Ok((scope, next))
    }

    /// Starts the request's trace, with `[traces]`: joined to the caller's when it is
    /// trusted to say.
    pub(crate) fn trace(&self, ex: &mut Exchange, headers: &http::HeaderMap, peer: SocketAddr) {
        if let Some(t) = &self.telemetry {
            let trusted = match t.trust() {
                Trust::All => true,
                Trust::None => false,
                Trust::Proxies => self.trusts_proxy(peer.ip()),
            };
            ex.spans = Some(t.start(headers, trusted));
        }
    }

    /// Phase: route. The most specific route for the request's host, normalized path and
    /// method; a path that could mean something else upstream, or a host named two ways,
    /// is refused before any route sees it.
    fn route(
        &self,
        routes: &Routes,
        ex: &mut Exchange,
        method: &http::Method,
    ) -> Result<Arc<Route>, Error> {
        let path = ex.path.as_deref().map_err(|_| Error::BadPath)?;
        let host = ex.host.as_deref().ok_or(Error::AmbiguousHost)?;
        let route = routes.find(host, path, method).ok_or(Error::NoRoute)?;
        ex.routed(
            &route.tenant,
            &route.name,
            &route.upstream.name,
            route.expose_errors,
            Some(route.total),
        );
        Ok(route)
    }

    /// Phase: admit to the gateway (load shedding) and the route (its concurrency). The
    /// guard holds both until the request ends.
    fn admit(
        &self,
        route: &Route,
    ) -> Result<
        (
            crate::resilience::Admission,
            tokio::sync::OwnedSemaphorePermit,
        ),
        Error,
    > {
        let admission = self.shedder.admit(route.policies.run_any())?;
        let permit = route
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        Ok((admission, permit))
    }

    /// What the route's policies run with: the request's context, and the secrets the
    /// route grants them.
    async fn scope(
        &self,
        route: &Route,
        ex: &Exchange,
        caller: Option<&Caller>,
    ) -> Result<Scope<'_>, Error> {
        let granted = if route.grants.is_empty() {
            Arc::default()
        } else {
            Arc::new(
                credentials::granted(self.secrets.as_ref(), &route.tenant, &route.grants).await?,
            )
        };
        Ok(Scope {
            pool: &self.pool,
            observer: Observer {
                metrics: Some((
                    self.metrics.clone(),
                    route.tenant.clone(),
                    route.name.clone(),
                )),
                granted,
                queue: Some(self.shedder.clone()),
                tenant: route.tenant_guard.clone(),
                spans: ex.spans.clone(),
            },
            ctx: Context {
                tenant: route.tenant.clone(),
                route: route.name.clone(),
                correlation_id: ex.cid.clone(),
                identity: caller.map(Caller::identity),
                config: Vec::new(),
                sealer: None,
            },
        })
    }

    /// Phase: upstream, with the route's own credential (never seen by policies). The
    /// answer is streamed through when nothing reads it, else read whole by the route's
    /// total deadline.
    async fn upstream(
        &self,
        route: &Route,
        ex: &Exchange,
        request: &Request,
        origin: &forward::Origin,
    ) -> Result<Answer, Error> {
        let credentials = match &route.upstream_auth {
            None => Vec::new(),
            Some(c) => vec![c.header(self.secrets.as_ref(), &route.tenant).await?],
        };
        let read = route.policies.read_answer();
        let mut out = forward::outbound(
            request,
            Target {
                base: &route.upstream.base,
                path: route.upstream_path(&request.path),
                origin,
                tenant: &route.tenant,
                correlation_id: &ex.cid,
                identity: ex.identity(),
                reads_response: read,
                credentials,
            },
        )?;
        if let Some(spans) = &ex.spans {
            spans.upstream_start(&route.upstream.name, out.headers_mut());
        }
        let answer = upstream::send(route, &self.metrics, &out).await;
        if let Some(spans) = &ex.spans {
            let status = answer.as_ref().map(|a| a.response.status().as_u16());
            spans.upstream_end(status.map_err(Error::cause));
        }
        let answer = answer?;
        if !read {
            return Ok(Answer::Streamed(io::stream_response(
                answer.response,
                answer.slot,
                answer.deadline,
            )));
        }
        let response = route
            .policies
            .read_answer_body(answer.response, answer.deadline)
            .await?;
        Ok(Answer::Read(response, answer.deadline))
    }

    /// Records a request refused by the connection itself (400 `bad_request`, 431
    /// `header_too_large`, 408 `header_timeout`, HTTP/2 stream refusals; see
    /// [`crate::server`]): it never reached a route, but it still gets a block. Nothing
    /// of the request is recorded beyond `status` and `cause`.
    pub async fn audit_refused(&self, status: StatusCode, cause: &str) {
        self.metrics.limit("", "", cause);
        self.metrics
            .request("", "", status.as_u16(), Duration::ZERO);
        let record = Record {
            correlation_id: new_id(),
            decision: Verdict::Refused.as_str().into(),
            cause: Some(cause.into()),
            status: status.as_u16(),
            time_ms: Record::now_ms(),
            ..Record::default()
        };
        let _ = self.ledger.append(record).await;
    }
}

/// The upstream's answer: streamed to the client, or read for the response phases (with
/// the deadline the response must be sent by).
enum Answer {
    Streamed(http::Response<Body>),
    Read(palisade_runtime::Response, tokio::time::Instant),
}

/// Phase: authenticate (routes with `auth`), before the body is read: the caller, or 401
/// with `WWW-Authenticate`, 403 (another tenant's caller, missing scope or role), 503
/// `auth_unavailable`.
async fn authenticate(
    routes: &Routes,
    route: &Route,
    ex: &mut Exchange,
    parts: &http::request::Parts,
) -> Result<Option<Caller>, Error> {
    let Some(rule) = &route.auth else {
        return Ok(None);
    };
    let cert = parts.extensions.get::<ClientCertificate>();
    let caller = routes
        .auth
        .authorize(rule, &route.tenant, &parts.headers, cert)
        .await?;
    ex.identify(&caller.subject);
    Ok(Some(caller))
}

/// What the head phases found and hold until the request ends.
pub(crate) struct Head {
    /// The gateway's and the route's admission.
    _admitted: Box<dyn Send + Sync>,
    pub(crate) caller: Option<Caller>,
    pub(crate) bound: Bound,
}

/// A request bound to its route's tenant.
pub(crate) struct Bound {
    pub(crate) parts: http::request::Parts,
    /// The normalized path, as policies see it.
    pub(crate) path: String,
    pub(crate) origin: forward::Origin,
    /// The tenant's concurrency slot, held until the request ends.
    _slot: Option<crate::resilience::TenantSlot>,
}

/// Phase: bind tenant. The caller spends its own tenant's budget (429
/// `tenant_concurrency`, `tenant_rate_limited`, `route_rate_limited`,
/// `tenant_cpu_budget`); nothing the caller sent may pose as the gateway's own
/// (`x-palisade-*`, tenant and forwarding headers removed), and the gateway's
/// credentials stay with the gateway.
async fn bind_tenant(
    routes: &Routes,
    route: &Route,
    ex: &Exchange,
    mut parts: http::request::Parts,
    caller: Option<&Caller>,
    peer: SocketAddr,
) -> Result<Bound, Error> {
    let slot = match &route.tenant_guard {
        Some(guard) => Some(guard.admit(route.policies.run_any()).await?),
        None => None,
    };
    if let Some(rate) = &route.guard.rate {
        rate.check("route_rate_limited")
            .await
            .map_err(|wait| Error::RateLimited {
                scope: "route",
                retry_after: retry_after(wait),
            })?;
    }
    let keep_bearer = route.auth.as_ref().is_some_and(|a| a.forward_bearer)
        && caller.is_some_and(|c| c.scheme == crate::auth::Scheme::Jwt);
    let origin = forward::inbound(
        &mut parts.headers,
        Some(peer),
        ex.host.as_deref().unwrap_or_default(),
        &routes.trusted_proxies,
        caller.is_some() && !keep_bearer,
    );
    Ok(Bound {
        parts,
        path: ex.path.clone().unwrap_or_default(),
        origin,
        _slot: slot,
    })
}

/// Builds everything `file` names without serving and without changing anything (no
/// database or directory is created): its key files, CAs and modules and, unless
/// `offline`, the registry modules and secrets it references, read from the database.
/// What `palisade check-config` reports after [`crate::config::read`].
pub fn validate(file: &File, engine: &Engine, offline: bool) -> Vec<Issue> {
    let mut issues = Vec::new();
    let checked = Checked::new(file).unwrap_or_else(|invalid| {
        issues.extend(invalid.issues);
        Checked::unauthenticated(file)
    });
    let mut registry = None;
    let mut secrets = None;
    if offline {
        if let Err(problems) = crate::registry::trust(&file.tenants) {
            issues.extend(file.issues(problems));
        }
    } else {
        let db = &file.audit.store;
        let mut unusable = Vec::new();
        if let Some(config) = &file.registry {
            match Registry::open_read_only(config, db, engine) {
                Ok(r) => {
                    if let Err(more) = r.set_trust(file) {
                        issues.extend(more);
                    }
                    registry = Some(r);
                }
                Err(e) => unusable.push(Problem::key(
                    "registry",
                    format!("[registry] {e} (or check with --offline)"),
                )),
            }
        }
        if let Some(config) = &file.secrets {
            match SecretStore::open_read_only(config, db) {
                Ok(s) => {
                    if let Some(r) = file.fleet.as_ref().and_then(|f| f.redis.password.as_ref())
                        && let Err(e) = s.get(&r.tenant, &r.secret)
                    {
                        unusable.push(Problem::key(
                            "fleet.redis.password",
                            format!("secret {:?} of {:?}: {e}", r.secret, r.tenant),
                        ));
                    }
                    secrets = Some(s);
                }
                Err(e) => unusable.push(Problem::key(
                    "secrets",
                    format!("[secrets] {e} (or check with --offline)"),
                )),
            }
        }
        issues.extend(file.issues(unusable));
    }
    issues.extend(file.issues(crate::export::check_credentials(&file.audit)));
    let kept = Kept::new(Arc::new(Metrics::new()), None);
    let sources = Sources {
        registry: registry.as_ref(),
        secrets: secrets.as_ref(),
        offline: true,
        check_secrets: true,
    };
    if let Err(invalid) = Routes::build(checked, engine, sources, &kept) {
        issues.extend(invalid.issues);
    }
    issues
}

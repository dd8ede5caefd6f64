//! The request pipeline: a fixed sequence of named phases.
//!
//! | phase | may return | then |
//! | --- | --- | --- |
//! | correlation id | always an id (the caller's `x-correlation-id` if it is 1-64 of `[A-Za-z0-9_-]`, else a fresh one) | sent upstream and back to the client |
//! | routing | a route, or 404 `no_route` | |
//! | load shedding | 503 `gateway_overloaded` with `Retry-After` (in-flight bound, standing policy queue) | see [`crate::resilience`] |
//! | route limit | 503 `route_overloaded` with `Retry-After` (route concurrency) | |
//! | auth | the caller (routes with `auth`), or 401 with `WWW-Authenticate`, or 503 `auth_unavailable` (introspection down); see [`crate::auth`] | before the body is read |
//! | tenant binding | 403 `tenant_mismatch` unless the caller's tenant is the route's; 403 `insufficient_scope`/`missing_role`; caller-sent `x-palisade-*` and tenant headers removed | before any policy runs |
//! | tenant and route limits | 429 `tenant_concurrency`, `tenant_rate_limited`, `route_rate_limited`, `tenant_cpu_budget`, with `Retry-After` | after auth: callers spend their own tenant's budget |
//! | body limits | 413 `body_too_large`, 408 `body_timeout`, 400 `bad_body` | the connection is closed after a body error |
//! | request policies | `Continue` (maybe changed), `Respond` (ends the pipeline: no upstream), or an error: 500 when fail-closed, skipped when fail-open | |
//! | upstream | the response head, or 503 `upstream_circuit_open`/`upstream_saturated`, 502 `upstream_unavailable`/`upstream_reset`, 504 `upstream_timeout` (first byte) / `upstream_deadline` (total) | retries and hedges within the route's budget |
//! | response policies | `Continue` (maybe changed), `Respond` (replaces the response), or an error: always 502 | |
//! | redaction | the redacted body, or 502 when the body cannot be read (never fail-open) | |
//! | audit | the block is durable, or 503 `audit_unavailable` (the response is withheld) | |
//! | response | the client gets the response with `x-correlation-id` | |
//!
//! Headers and HTTP/1.1 parse limits (431) and the header read timeout are enforced by
//! the connection before the pipeline runs; see [`crate::server`].

mod forward;
pub(crate) mod io;
mod request;
mod routes;
pub(crate) mod target;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderValue, StatusCode};
use palisade_ledger::{Ledger, Record};
use palisade_runtime::{Context, Decision, Engine, InvocationPool, Request};

use self::forward::Target;
use self::io::ReadError;
pub(crate) use self::io::ResponseDeadline;
pub(crate) use self::request::new_id;
use self::request::{Pending, correlation_id, without_port};
pub(crate) use self::routes::{Route, Routes, rules as redaction_rules};
use crate::auth::{Authenticator, ClientCertificate, mtls::ReloadableVerifier};
use crate::body::Body;
pub(crate) use crate::chain::POLICY_INVALID_OUTPUT;
use crate::chain::{Observer, Trace};
use crate::config::{File, Invalid};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::resilience::{Kept, Shedder, retry_after};
use crate::secrets::SecretStore;

/// Redacted paths one audit block lists at most; past that it says how many more.
const MAX_RECORDED_PATHS: usize = 1_000;

/// The pipeline: routes (swapped on reload), the policy runtime, the ledger and metrics.
pub struct Pipeline {
    routes: ArcSwap<Routes>,
    engine: Engine,
    pool: InvocationPool,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
    client_verifier: Arc<ReloadableVerifier>,
    registry: Option<Arc<Registry>>,
    secrets: Option<Arc<SecretStore>>,
    shedder: Arc<Shedder>,
    kept: Kept,
    /// The file the routes were built from, for rebuilds after registry changes.
    file: std::sync::Mutex<File>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// What [`Pipeline::handle`] did, for the connection's own bookkeeping.
struct Outcome {
    response: http::Response<Body>,
    decision: &'static str,
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
        let registry = Registry::open(file, &engine)
            .map_err(|issues| Invalid { issues })?
            .map(Arc::new);
        let secrets = SecretStore::open(file)
            .map_err(|issues| Invalid { issues })?
            .map(Arc::new);
        let kept = Kept::new(metrics.clone());
        let routes = Routes::build(
            file,
            &engine,
            registry.as_deref(),
            secrets.as_deref(),
            &kept,
        )?;
        Ok(Pipeline {
            shedder: Arc::new(Shedder::new(&file.server.overload, metrics.clone())),
            kept,
            registry,
            secrets,
            file: std::sync::Mutex::new(file.clone()),
            client_verifier: Arc::new(ReloadableVerifier::new(routes.auth.client_verifier())),
            routes: ArcSwap::from_pointee(routes),
            pool: InvocationPool::new(file.runtime.concurrency.max(1)),
            engine,
            ledger,
            metrics,
            body_timeout: Duration::from_millis(file.server.body_timeout_ms),
        })
    }

    /// Replaces the routes with those of `file`. Requests in flight finish on the routes
    /// they started with; new requests see the new ones. Nothing changes on error.
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every problem in `file`.
    pub fn reload(&self, file: &File) -> Result<(), Invalid> {
        let mut current = self.file.lock().expect("pipeline file lock");
        if let Some(registry) = &self.registry {
            registry
                .set_trust(file)
                .map_err(|issues| Invalid { issues })?;
            // Another gateway sharing the database may have activated versions.
            if let Err(e) = registry.refresh_active() {
                tracing::warn!(error = %e, "registry not readable; using the last known versions");
            }
        }
        let routes = match Routes::build(
            file,
            &self.engine,
            self.registry.as_deref(),
            self.secrets.as_deref(),
            &self.kept,
        ) {
            Ok(r) => r,
            Err(e) => {
                // The old trust stays with the old routes.
                if let Some(registry) = &self.registry {
                    let _ = registry.set_trust(&current);
                }
                return Err(e);
            }
        };
        self.client_verifier.set(routes.auth.client_verifier());
        self.shedder.set(&file.server.overload);
        self.routes.store(Arc::new(routes));
        *current = file.clone();
        Ok(())
    }

    /// Rebuilds the routes from the current file (after a registry activation): new
    /// requests use the newly active versions, requests in flight finish on theirs.
    ///
    /// # Errors
    ///
    /// [`Invalid`] when a route can no longer be built; the old routes stay.
    pub fn rebuild(&self) -> Result<(), Invalid> {
        let file = self.file.lock().expect("pipeline file lock").clone();
        self.reload(&file)
    }

    /// The secret store, when `[secrets]` is configured.
    pub fn secrets(&self) -> Option<&Arc<SecretStore>> {
        self.secrets.as_ref()
    }

    /// The secrets a route grants its policies, decrypted.
    async fn granted(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, crate::secrets::SecretValue>, Error> {
        let store = self.secrets.clone().ok_or(Error::UpstreamCredentials)?;
        let (tenant, ids) = (tenant.to_string(), ids.to_vec());
        tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|id| match store.get(&tenant, &id) {
                    Ok(v) => Ok((id, v)),
                    Err(e) => {
                        tracing::warn!(%tenant, secret = %id, error = %e, "granted secret unavailable");
                        Err(Error::UpstreamCredentials)
                    }
                })
                .collect()
        })
        .await
        .map_err(|_| Error::UpstreamCredentials)?
    }

    /// The headers `auth` adds upstream for `tenant`, marked sensitive.
    async fn upstream_credentials(
        &self,
        tenant: &str,
        auth: &crate::config::UpstreamAuth,
    ) -> Result<Vec<(http::HeaderName, HeaderValue)>, Error> {
        let store = self.secrets.clone().ok_or(Error::UpstreamCredentials)?;
        let (tenant, auth) = (tenant.to_string(), auth.clone());
        tokio::task::spawn_blocking(move || {
            let fetch = |id: &str| {
                store.get(&tenant, id).map_err(|e| {
                    tracing::warn!(%tenant, secret = id, error = %e, "upstream credential unavailable");
                    Error::UpstreamCredentials
                })
            };
            let (name, value) = if let Some(id) = &auth.bearer {
                let v = fetch(id)?;
                let mut s = zeroize::Zeroizing::new(b"Bearer ".to_vec());
                s.extend_from_slice(v.expose());
                (http::header::AUTHORIZATION, HeaderValue::from_bytes(&s))
            } else if let (Some(user), Some(id)) = (&auth.basic_user, &auth.basic_password) {
                use base64::Engine as _;
                let v = fetch(id)?;
                let mut pair = zeroize::Zeroizing::new(format!("{user}:").into_bytes());
                pair.extend_from_slice(v.expose());
                let encoded = zeroize::Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(&*pair)
                ));
                (http::header::AUTHORIZATION, HeaderValue::from_str(&encoded))
            } else if let (Some(header), Some(id)) = (&auth.header, &auth.header_secret) {
                let v = fetch(id)?;
                let name = http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| Error::UpstreamCredentials)?;
                (name, HeaderValue::from_bytes(v.expose()))
            } else {
                return Err(Error::UpstreamCredentials);
            };
            let mut value = value.map_err(|_| Error::UpstreamCredentials)?;
            value.set_sensitive(true);
            Ok(vec![(name, value)])
        })
        .await
        .map_err(|_| Error::UpstreamCredentials)?
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

    /// Whether `tenant` is configured.
    pub fn has_tenant(&self, tenant: &str) -> bool {
        let file = self.file.lock().expect("pipeline file lock");
        file.tenants.iter().any(|t| t.get_ref().name == tenant)
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
        let started = Instant::now();
        let begun = tokio::time::Instant::now();
        // Phase: correlation id.
        let cid = correlation_id(req.headers());
        // Routing works on the normalized path; a path that could mean something else
        // upstream is refused before any route sees it.
        let path = target::normalize(req.uri().path());
        let routed = path.as_deref().unwrap_or("/");
        let recorded_path = match req.uri().query() {
            Some(q) => Record::path_without_query_values(&format!("{routed}?{q}")),
            None => routed.to_string(),
        };
        let mut pending = Pending {
            record: Some(Record {
                correlation_id: cid.clone(),
                method: req.method().as_str().to_string(),
                path: recorded_path,
                time_ms: Record::now_ms(),
                ..Record::default()
            }),
            ledger: self.ledger.clone(),
        };
        let record = pending.record();
        let mut trace = Trace::default();

        // Phase: routing.
        let routes = self.routes.load_full();
        // The host is the URI's authority (HTTP/2 `:authority`, HTTP/1.1 absolute form)
        // or else `Host`; when both are sent they must agree, or the upstream could be told
        // of another host than the one the request was routed and authorized for.
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let host_header = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.to_str().unwrap_or("\u{0}"));
        let ambiguous_host = matches!(
            (&authority, host_header),
            (Some(a), Some(h)) if !without_port(a).eq_ignore_ascii_case(without_port(h))
        );
        let host = authority
            .or_else(|| host_header.map(str::to_string))
            .unwrap_or_default();
        let route = match &path {
            Ok(path) if !ambiguous_host => routes.find(&host, path, req.method()),
            _ => None,
        };
        let (result, expose) = match (&route, &path) {
            (_, Err(_)) => (Err(Error::BadPath), false),
            _ if ambiguous_host => (Err(Error::AmbiguousHost), false),
            (None, _) => (Err(Error::NoRoute), false),
            (Some(r), Ok(path)) => {
                record.tenant = r.tenant.clone();
                record.route = r.name.clone();
                let call = Call {
                    route: r,
                    auth: &routes.auth,
                    trusted: &routes.trusted_proxies,
                    peer,
                    cid: &cid,
                    host: &host,
                    path,
                };
                // A panic anywhere below fails this request only, and it still gets
                // its block.
                let run = std::panic::AssertUnwindSafe(self.process(
                    call,
                    req,
                    &mut record.identity,
                    &mut trace,
                ));
                let result = futures_util::FutureExt::catch_unwind(run)
                    .await
                    .unwrap_or(Err(Error::Internal));
                (result, r.expose_errors)
            }
        };

        let mut response = match result {
            Ok(outcome) => {
                record.decision = outcome.decision.into();
                if outcome.decision == "allowed" {
                    record.upstream = route.as_ref().map(|r| r.upstream.name.clone());
                }
                outcome.response
            }
            Err(e) => {
                if let Error::Forbidden { subject, .. } = &e {
                    record.identity = Some(subject.clone());
                }
                record.cause = Some(e.cause().into());
                record.decision = e.decision().into();
                if matches!(
                    e,
                    Error::UpstreamTimeout
                        | Error::UpstreamDeadline
                        | Error::UpstreamReset
                        | Error::UpstreamUnavailable
                        | Error::UpstreamSaturated
                        | Error::CircuitOpen { .. }
                        | Error::ResponsePolicy { .. }
                        | Error::Redaction(_)
                ) {
                    record.upstream = route.as_ref().map(|r| r.upstream.name.clone());
                }
                if e.is_limit() {
                    self.metrics.limit(&record.tenant, &record.route, e.cause());
                }
                e.to_response(&cid, expose)
            }
        };
        if record.cause.is_none() && !trace.skipped.is_empty() {
            record.cause = Some(format!("fail_open:{}", trace.skipped.join(",")));
        }
        record.status = response.status().as_u16();
        record.modules = trace.modules;
        // Keys are data too: a recorded path names fields, never an email or SSN key.
        record.redacted = trace
            .redacted
            .iter()
            .take(MAX_RECORDED_PATHS)
            .map(|p| {
                if p.starts_with("header:") {
                    p.clone() // a configured header name
                } else {
                    palisade_jsonpath::scrub_keys(p)
                }
            })
            .collect();
        if trace.redacted.len() > MAX_RECORDED_PATHS {
            // A block stays small however many values one body had (a million NDJSON lines).
            let more = trace.redacted.len() - MAX_RECORDED_PATHS;
            record.redacted.push(format!("(+{more} more)"));
        }
        let elapsed = started.elapsed();
        record.latency_us = elapsed.as_micros() as u64;
        let (tenant, route_name) = (record.tenant.clone(), record.route.clone());

        tracing::debug!(
            correlation_id = %cid,
            tenant = %record.tenant,
            route = %record.route,
            status = record.status,
            decision = %record.decision,
            cause = record.cause.as_deref(),
            latency_us = record.latency_us,
            "request"
        );

        // Phase: audit. No block, no response.
        // From here the block is the ledger's: the append runs as a task of its own, so a
        // client that leaves while it waits (a full writer queue) cannot cancel it.
        let record = pending.record.take().expect("the record is appended once");
        let ledger = self.ledger.clone();
        let appended = tokio::spawn(async move { ledger.append(record).await })
            .await
            .unwrap_or_else(|e| {
                Err(palisade_ledger::Error::Unavailable(format!(
                    "ledger append task: {e}"
                )))
            });
        if let Err(e) = appended {
            tracing::error!(correlation_id = %cid, error = %e, "no audit block; response withheld (503)");
            response = Error::AuditUnavailable.to_response(&cid, false);
        }
        self.metrics
            .request(&tenant, &route_name, response.status().as_u16(), elapsed);

        // Phase: response. The route's total deadline covers sending it too.
        if let Ok(v) = HeaderValue::from_str(&cid) {
            response.headers_mut().insert("x-correlation-id", v);
        }
        if let Some(r) = &route
            && response.extensions().get::<ResponseDeadline>().is_none()
        {
            response
                .extensions_mut()
                .insert(ResponseDeadline(begun + r.total));
        }
        response
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
            decision: "refused".into(),
            cause: Some(cause.into()),
            status: status.as_u16(),
            time_ms: Record::now_ms(),
            ..Record::default()
        };
        let _ = self.ledger.append(record).await;
    }

    async fn process<B>(
        &self,
        call: Call<'_>,
        req: http::Request<B>,
        who: &mut Option<String>,
        trace: &mut Trace,
    ) -> Result<Outcome, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    {
        let Call {
            route,
            auth,
            trusted,
            peer,
            cid,
            host,
            path,
        } = call;
        // Phase: load shedding, then the route limit.
        let runs_policies = !route.request.is_empty() || !route.response.is_empty();
        let _admission = self.shedder.admit(runs_policies)?;
        let _permit = route
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        let (parts, body) = req.into_parts();

        // Phases: auth and tenant binding, before the body is read.
        let caller = match &route.auth {
            None => None,
            Some(rule) => {
                let cert = parts.extensions.get::<ClientCertificate>();
                let caller = auth
                    .authorize(rule, &route.tenant, &parts.headers, cert)
                    .await?;
                *who = Some(caller.subject.clone());
                Some(caller)
            }
        };

        // Phase: tenant and route limits.
        let _tenant_slot = match &route.tenant_guard {
            Some(guard) => Some(guard.admit(runs_policies)?),
            None => None,
        };
        if let Some(rate) = &route.guard.rate {
            rate.check().map_err(|wait| Error::RateLimited {
                scope: "route",
                retry_after: retry_after(wait),
            })?;
        }

        // Phase: body limits.
        let body = io::read_body(body, route.max_body, self.body_timeout)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => Error::BodyTooLarge,
                ReadError::Timeout => Error::BodyTimeout,
                ReadError::Broken => Error::BadBody,
            })?;

        // Tenant binding: nothing the caller sent may pose as the gateway's own, and the
        // gateway's credentials stay with the gateway.
        let mut headers = parts.headers;
        let keep_bearer = route.auth.as_ref().is_some_and(|a| a.forward_bearer)
            && caller
                .as_ref()
                .is_some_and(|c| c.scheme == crate::config::Scheme::Jwt);
        let origin = forward::inbound(
            &mut headers,
            peer,
            host,
            trusted,
            caller.is_some() && !keep_bearer,
        );
        let ctx = Context {
            tenant: route.tenant.clone(),
            route: route.name.clone(),
            correlation_id: cid.to_string(),
            identity: caller.as_ref().map(|c| c.identity()),
            config: Vec::new(),
        };
        let granted = if route.grants.is_empty() {
            Arc::default()
        } else {
            Arc::new(self.granted(&route.tenant, &route.grants).await?)
        };
        let observer = Observer {
            metrics: Some((
                self.metrics.clone(),
                route.tenant.clone(),
                route.name.clone(),
            )),
            granted,
            queue: Some(self.shedder.clone()),
            tenant: route.tenant_guard.clone(),
        };
        let request = Request {
            method: parts.method.as_str().to_string(),
            path: path.to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers: io::to_pairs(&headers),
            body,
        };

        // Phase: request policies.
        let request = match route
            .request
            .on_request(&self.pool, &observer, &ctx, request, trace)
            .await?
        {
            Decision::Continue(r) if route.allows(&r.method) => r,
            Decision::Continue(_) => {
                return Err(Error::RequestPolicy {
                    cause: POLICY_INVALID_OUTPUT,
                    detail: "the route does not allow the method the policies chose".into(),
                });
            }
            Decision::Respond(own) => {
                // Phase: redaction applies to a policy's own answer too.
                let own = self.redact(route, own, trace)?;
                let decision = if own.status >= 400 {
                    "denied"
                } else {
                    "responded"
                };
                return Ok(Outcome {
                    response: io::to_http(own),
                    decision,
                });
            }
        };

        // Phase: upstream (with the route's own credential, never seen by policies).
        let credentials = match &route.upstream_auth {
            None => Vec::new(),
            Some(a) => self.upstream_credentials(&route.tenant, a).await?,
        };
        let reads_body = !route.response.is_empty() || route.redactor.is_some();
        let out = forward::outbound(
            &request,
            Target {
                base: &route.upstream.base,
                path: route.upstream_path(&request.path),
                origin: &origin,
                tenant: &route.tenant,
                correlation_id: cid,
                identity: who.as_deref(),
                reads_response: reads_body,
                credentials,
            },
        )?;
        let answer = upstream::send(route, &self.metrics, &out).await?;
        if !reads_body {
            return Ok(Outcome {
                response: io::stream_response(answer.response, answer.slot, answer.deadline),
                decision: "allowed",
            });
        }
        let deadline = answer.deadline;
        let response = io::read_response(answer.response, route.max_response, deadline).await?;
        drop(answer.slot);

        // Phase: response policies.
        let request = Arc::new(request);
        let response = route
            .response
            .on_response(&self.pool, &observer, &ctx, &request, response, trace)
            .await?;

        // Phase: redaction.
        let response = self.redact(route, response, trace)?;
        let mut response = io::to_http(response);
        response.extensions_mut().insert(ResponseDeadline(deadline));
        Ok(Outcome {
            response,
            decision: "allowed",
        })
    }

    fn redact(
        &self,
        route: &Route,
        mut res: palisade_runtime::Response,
        trace: &mut Trace,
    ) -> Result<palisade_runtime::Response, Error> {
        let Some(redactor) = &route.redactor else {
            return Ok(res);
        };
        let redacted = redactor
            .redact_response(&mut res)
            .map_err(|e| Error::Redaction(e.cause()))?;
        trace.redacted.extend(redacted);
        Ok(res)
    }
}

/// What [`Pipeline::process`] works on besides the request.
struct Call<'a> {
    route: &'a Route,
    auth: &'a Authenticator,
    trusted: &'a [ipnet::IpNet],
    peer: SocketAddr,
    cid: &'a str,
    /// The host the route was found by.
    host: &'a str,
    /// The normalized path the route was found by.
    path: &'a str,
}

/// Loads every module and compiles every rule of `file` without serving: what
/// `palisade check-config` reports.
///
/// # Errors
///
/// [`Invalid`] with every problem in `file`.
pub fn validate(file: &File, engine: &Engine) -> Result<(), Invalid> {
    let registry = Registry::open(file, engine).map_err(|issues| Invalid { issues })?;
    let secrets = SecretStore::open(file).map_err(|issues| Invalid { issues })?;
    let kept = Kept::new(Arc::new(Metrics::new()));
    Routes::build(file, engine, registry.as_ref(), secrets.as_ref(), &kept).map(drop)
}

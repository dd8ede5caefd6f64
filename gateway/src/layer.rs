//! [`PolicyLayer`]: the gateway's phases around any tower service (an axum router, a
//! hyper client to an upstream of your own, another proxy's handler).
//!
//! The inner service stands where `palisade serve`'s upstream stands, and the phases are
//! the same code ([`crate::pipeline`]): a path that is not already in normal form is
//! refused (400 `bad_path`: what runs behind the layer may have been chosen by the raw
//! path, so the policies judge exactly that path), the
//! body read under [`BodyLimits`] (413, 408), the request policies run and what they
//! leave (method, path, query, headers, body) is what the inner service gets, with the
//! same header rules (caller-sent `x-palisade-*` and forwarding headers removed,
//! `x-palisade-tenant` and `x-correlation-id` set); its answer is streamed through, or,
//! when response policies or redaction must read it, read whole (502 beyond the limit,
//! for a partial or encoded body) and changed. Failures become the same safe responses
//! as in the gateway (500, 502), so nothing unredacted leaves when a policy fails; an
//! error of the inner service is 502 `upstream_unavailable`. Given a ledger
//! ([`PolicyLayer::audit`]), every request gets its block, as in the gateway.
//!
//! The inner service gets an origin-form URI (the caller's scheme and authority never
//! reach it; the host it asked for is `x-forwarded-host`) and no `Host`. A response no
//! policy and no redaction reads is streamed as the inner service sends it, under the
//! embedding's own timeouts. `TRACE`, `TRACK` and `CONNECT` are refused (404 `no_route`),
//! as on a route that does not list them.
//!
//! Wrap the whole router (`layer.layer(router)`, served through
//! `Router::new().fallback_service(...)`) for a policy's method or path rewrite to choose
//! the handler; axum's `Router::layer` routes first, so there a rewrite reaches
//! `req.uri()` and `req.method()` but not the choice of handler or its `Path` values.
//!
//! ```no_run
//! # fn demo(engine: &palisade_runtime::Engine) -> palisade_runtime::Result<()> {
//! use palisade_gateway::PolicyLayer;
//! use palisade_runtime::Policy;
//!
//! let layer = PolicyLayer::new("acme", "orders")
//!     .request_policy(Policy::from_file(engine, "inject-headers.wasm")?, &[("request.set.x-env", "prod")])
//!     .response_policy(Policy::from_file(engine, "redact-pii.lua")?, &[]);
//! // axum: Router::new().fallback_service(layer.layer(Router::new().route(...)))
//! # Ok(()) }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::Full;
use palisade_ledger::Ledger;
use palisade_runtime::{Context, InvocationPool, Policy};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{Body, BoxError};
use crate::chain::{ChainPolicy, Observer};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::pipeline::exchange::Exchange;
use crate::pipeline::forward::{self, Target};
use crate::pipeline::{BodyLimits, Next, Outcome, Policies, Scope, io, request_of};
use crate::redaction::Redactor;

#[derive(Debug)]
struct Settings {
    tenant: String,
    route: String,
    policies: Policies,
    pool: InvocationPool,
    ledger: Option<Arc<Ledger>>,
    metrics: Option<Arc<Metrics>>,
}

/// Applies Palisade policies to a tower service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PolicyLayer {
    settings: Arc<Settings>,
}

impl PolicyLayer {
    /// A layer with no policy yet, reporting as `tenant` / `route` to policies and the
    /// audit ledger. Limits: [`BodyLimits::default`] (as a route's),
    /// [`InvocationPool::DEFAULT_CONCURRENCY`] invocations at once; no ledger, no metrics.
    pub fn new(tenant: &str, route: &str) -> Self {
        PolicyLayer {
            settings: Arc::new(Settings {
                tenant: tenant.into(),
                route: route.into(),
                policies: Policies::default(),
                pool: InvocationPool::default(),
                ledger: None,
                metrics: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::get_mut(&mut self.settings).expect("configure a PolicyLayer before cloning it"));
        self
    }

    /// Appends a request policy with its config.
    pub fn request_policy(self, module: Policy, config: &[(&str, &str)]) -> Self {
        let p = ChainPolicy::new(module, pairs(config));
        self.edit(|s| s.policies.request.policies.push(p))
    }

    /// Appends a response policy with its config.
    pub fn response_policy(self, module: Policy, config: &[(&str, &str)]) -> Self {
        let p = ChainPolicy::new(module, pairs(config));
        self.edit(|s| s.policies.response.policies.push(p))
    }

    /// Redacts every response with `redactor` after the response policies.
    pub fn redact(self, redactor: Redactor) -> Self {
        self.edit(|s| s.policies.redactor = Some(Arc::new(redactor)))
    }

    /// Validates request bodies (before the request policies) and response bodies
    /// (before the response policies) against `schemas` ([`crate::schema::compile`]).
    pub fn schemas(self, schemas: crate::schema::Schemas) -> Self {
        self.edit(|s| s.policies.schemas = Some(Arc::new(schemas)))
    }

    /// The body limits, replacing [`BodyLimits::default`].
    pub fn limits(self, limits: BodyLimits) -> Self {
        self.edit(|s| s.policies.limits = limits)
    }

    /// The largest request body accepted (413 beyond). By default 1 MiB.
    pub fn max_body(self, bytes: u64) -> Self {
        self.edit(|s| s.policies.limits.max_body = bytes)
    }

    /// The largest response body the policies read (502 beyond). By default 8 MiB.
    pub fn max_response(self, bytes: u64) -> Self {
        self.edit(|s| s.policies.limits.max_response = bytes)
    }

    /// Appends a block to `ledger` for every request, as the gateway does: no block, no
    /// response (503 `audit_unavailable`).
    pub fn audit(self, ledger: Arc<Ledger>) -> Self {
        self.edit(|s| s.ledger = Some(ledger))
    }

    /// Reports requests, limits and policy runs to `metrics`.
    pub fn metrics(self, metrics: Arc<Metrics>) -> Self {
        self.edit(|s| s.metrics = Some(metrics))
    }
}

fn pairs(config: &[(&str, &str)]) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`PolicyLayer`] wraps around `S`.
#[derive(Debug, Clone)]
pub struct PolicyService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S, B, RB> Service<http::Request<B>> for PolicyService<S>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    RB: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The ready clone serves this call; a fresh clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let s = self.settings.clone();
        Box::pin(async move {
            let mut ex = Exchange::begin(&req, s.ledger.clone());
            ex.routed(&s.tenant, &s.route, "inner", false, None);
            let run = AssertUnwindSafe(proxy(inner, &s, &mut ex, req));
            let result = run.catch_unwind().await.unwrap_or(Err(Error::Internal));
            Ok(ex.finish(result, s.metrics.as_deref()).await)
        })
    }
}

/// The gateway's phases around the inner service, which stands where the upstream does:
/// it gets the request as the policies left it (method, path, query, headers, body),
/// buffered, as an upstream would. Its error is the upstream's: 502
/// `upstream_unavailable`.
async fn proxy<S, B, RB>(
    mut inner: S,
    s: &Settings,
    ex: &mut Exchange,
    req: http::Request<B>,
) -> Result<Outcome, Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data = Bytes> + Unpin,
    RB: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Into<BoxError>,
{
    let path = ex.path.clone().map_err(|_| Error::BadPath)?;
    if path != req.uri().path() {
        // What runs behind the layer may already have been chosen by the raw path (an
        // axum `Router::layer` routes first): the policies must judge that same path.
        return Err(Error::BadPath);
    }
    let host = ex.host.clone().ok_or(Error::AmbiguousHost)?;
    let (mut parts, body) = req.into_parts();
    if !s.policies.methods.allows(parts.method.as_str()) {
        return Err(Error::NoRoute);
    }
    // The peer is the inner server's to know: no `X-Forwarded-For` is added, and the
    // caller's own is removed.
    let origin = forward::inbound(
        &mut parts.headers,
        None,
        &host,
        &crate::pipeline::client::Proxies::default(),
        false,
    );
    let body = s.policies.read_body(body).await?;
    let scope = Scope {
        pool: &s.pool,
        observer: Observer {
            metrics: s
                .metrics
                .clone()
                .map(|m| (m, s.tenant.clone(), s.route.clone())),
            ..Observer::default()
        },
        ctx: Context {
            tenant: s.tenant.clone(),
            route: s.route.clone(),
            correlation_id: ex.cid.clone(),
            identity: None,
            config: Vec::new(),
            sealer: None,
        },
    };
    let request = request_of(&parts, path, body);
    let request = match s
        .policies
        .on_request(&scope, request, &mut ex.trace)
        .await?
    {
        Next::Forward(request) => request,
        Next::Respond(answer) => return Ok(answer),
    };
    let read = s.policies.read_answer();
    // Origin-form, always: a caller's absolute-form or HTTP/2 authority never names
    // where the inner service (a client to an upstream, say) sends it. The host it asked
    // for travels as `x-forwarded-host`, as in `serve`.
    let base = http::Uri::from_static("/");
    let out = forward::outbound(
        &request,
        Target {
            base: &base,
            path: &request.path,
            origin: &origin,
            tenant: &s.tenant,
            correlation_id: &ex.cid,
            identity: None,
            reads_response: read,
            credentials: Vec::new(),
        },
    )?
    .into_request();
    let (out, body) = out.into_parts();
    parts.method = out.method;
    parts.uri = out.uri;
    parts.headers = out.headers;
    if !request.body.is_empty() || matches!(parts.method.as_str(), "POST" | "PUT" | "PATCH") {
        // As an HTTP client would send it: the length of the body as the policies left it.
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, request.body.len().into());
    }
    // The caller's extensions (connection info, say) stay with the request.
    let forward = http::Request::from_parts(parts, body);
    let res = inner.call(forward).await.map_err(|e| {
        let e: BoxError = e.into();
        tracing::debug!(correlation_id = %ex.cid, error = %e, "inner service failed");
        Error::UpstreamUnavailable
    })?;
    if !read {
        let (mut head, body) = res.into_parts();
        io::strip_hop_by_hop(&mut head.headers);
        let body = crate::body::from_send(body);
        return Ok(Outcome::allowed(http::Response::from_parts(head, body)));
    }
    let deadline = tokio::time::Instant::now() + s.policies.limits.body_timeout;
    let response = s.policies.read_answer_body(res, deadline).await?;
    s.policies
        .on_response(&scope, request, response, &mut ex.trace)
        .await
}

//! [`PolicyLayer`]: Palisade policies and redaction around any tower service (an axum
//! router, a hyper service, another proxy's handler).
//!
//! The service buffers the request body (up to a limit), runs the request policies,
//! calls the inner service, buffers its response (up to a limit), runs the response
//! policies and built-in redaction. Failures become the same safe responses as in the
//! gateway (413, 500, 502), so nothing unredacted leaves when a policy fails.
//!
//! ```no_run
//! # fn demo(engine: &palisade_runtime::Engine) -> palisade_runtime::Result<()> {
//! use palisade_gateway::PolicyLayer;
//! use palisade_runtime::Module;
//!
//! let layer = PolicyLayer::new("acme", "orders")
//!     .request_policy(Module::from_file(engine, "inject-headers.wasm")?, &[("request.set.x-env", "prod")])
//!     .response_policy(Module::from_file(engine, "redact-pii.lua")?, &[]);
//! // axum: Router::new().route(...).layer(layer)
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use palisade_runtime::{Context, Decision, InvocationPool, Module, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::Body;
use crate::chain::{Chain, ChainPolicy, Observer, Trace};
use crate::error::Error;
use crate::pipeline::{io, new_id};
use crate::redaction::Redactor;

#[derive(Debug)]
struct Settings {
    tenant: String,
    route: String,
    request: Chain,
    response: Chain,
    redactor: Option<Redactor>,
    pool: InvocationPool,
    max_body: u64,
    max_response: u64,
    body_timeout: Duration,
}

/// Applies Palisade policies to a tower service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PolicyLayer {
    settings: Arc<Settings>,
}

impl PolicyLayer {
    /// A layer with no policy yet, reporting as `tenant` / `route` to policies.
    /// Limits: 1 MiB request body, 8 MiB response body, 30 s body timeout, 64
    /// concurrent invocations.
    pub fn new(tenant: &str, route: &str) -> Self {
        PolicyLayer {
            settings: Arc::new(Settings {
                tenant: tenant.into(),
                route: route.into(),
                request: Chain::default(),
                response: Chain::default(),
                redactor: None,
                pool: InvocationPool::new(64),
                max_body: 1 << 20,
                max_response: 8 << 20,
                body_timeout: Duration::from_secs(30),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::get_mut(&mut self.settings).expect("configure a PolicyLayer before cloning it"));
        self
    }

    /// Appends a request policy with its config.
    pub fn request_policy(self, module: Module, config: &[(&str, &str)]) -> Self {
        let p = ChainPolicy::new(module, pairs(config));
        self.edit(|s| s.request.policies.push(p))
    }

    /// Appends a response policy with its config.
    pub fn response_policy(self, module: Module, config: &[(&str, &str)]) -> Self {
        let p = ChainPolicy::new(module, pairs(config));
        self.edit(|s| s.response.policies.push(p))
    }

    /// Redacts every response with `redactor` after the response policies.
    pub fn redact(self, redactor: Redactor) -> Self {
        self.edit(|s| s.redactor = Some(redactor))
    }

    /// The largest request body accepted (413 beyond). By default 1 MiB.
    pub fn max_body(self, bytes: u64) -> Self {
        self.edit(|s| s.max_body = bytes)
    }

    /// The largest response body the policies read (502 beyond). By default 8 MiB.
    pub fn max_response(self, bytes: u64) -> Self {
        self.edit(|s| s.max_response = bytes)
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
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: hyper::body::Body<Data = Bytes> + From<Bytes> + Send + Unpin + 'static,
    RB: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
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
        let settings = self.settings.clone();
        Box::pin(async move {
            let cid = new_id();
            match run(inner, &settings, req, &cid).await {
                Ok(Ok(res)) => Ok(res),
                Ok(Err(e)) => Ok(e.to_response(&cid, false)),
                Err(inner_error) => Err(inner_error),
            }
        })
    }
}

async fn run<S, B, RB>(
    mut inner: S,
    s: &Settings,
    req: http::Request<B>,
    cid: &str,
) -> Result<Result<http::Response<Body>, Error>, S::Error>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    B: hyper::body::Body<Data = Bytes> + From<Bytes> + Unpin,
    RB: hyper::body::Body<Data = Bytes> + Unpin,
{
    let (parts, body) = req.into_parts();
    let body = match io::read_body(body, s.max_body, s.body_timeout).await {
        Ok(b) => b,
        Err(io::ReadError::TooLarge) => return Ok(Err(Error::BodyTooLarge)),
        Err(io::ReadError::Timeout) => return Ok(Err(Error::BodyTimeout)),
        Err(io::ReadError::Broken) => return Ok(Err(Error::BadBody)),
    };
    let ctx = Context {
        tenant: s.tenant.clone(),
        route: s.route.clone(),
        correlation_id: cid.to_string(),
        identity: None,
        config: Vec::new(),
    };
    let observer = Observer::default();
    let mut trace = Trace::default();
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: io::to_pairs(&parts.headers),
        body,
    };
    let request = match s
        .request
        .on_request(&s.pool, &observer, &ctx, request, &mut trace)
        .await
    {
        Err(e) => return Ok(Err(e)),
        Ok(Decision::Respond(own)) => return Ok(redact(s, own).map(io::to_http)),
        Ok(Decision::Continue(r)) => r,
    };
    let mut forward = http::Request::from_parts(parts, B::from(request.body.clone()));
    *forward.headers_mut() = io::to_map(&request.headers);
    let res = inner.call(forward).await?;
    let (rparts, rbody) = res.into_parts();
    let body = match io::read_body(rbody, s.max_response, s.body_timeout).await {
        Ok(b) => b,
        Err(_) => return Ok(Err(Error::Redaction("response_too_large"))),
    };
    let response = Response {
        status: rparts.status.as_u16(),
        headers: io::to_pairs(&rparts.headers),
        body,
    };
    let request = Arc::new(request);
    Ok(async {
        let response = s
            .response
            .on_response(&s.pool, &observer, &ctx, &request, response, &mut trace)
            .await?;
        redact(s, response).map(io::to_http)
    }
    .await)
}

fn redact(s: &Settings, mut res: Response) -> Result<Response, Error> {
    if let Some(r) = &s.redactor {
        r.redact_response(&mut res)
            .map_err(|e| Error::Redaction(e.cause()))?;
    }
    Ok(res)
}

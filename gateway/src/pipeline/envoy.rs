//! The pipeline's phases for a request another proxy carries (Envoy's `ext_proc` and
//! `ext_authz`, [`crate::envoy`]): the same phases as [`Pipeline::handle`], run as that
//! proxy's messages arrive instead of in one go, with the upstream on the proxy's side.
//!
//! | message | phases |
//! | --- | --- |
//! | request headers | admit, route (by the proxy's route name, else host and path), limits, client addresses, authenticate, bind tenant |
//! | request body (or the headers, with no body) | read body (by `max_body_bytes`), schema, request policies |
//! | response headers and body | response schema, response policies, redaction |
//! | end | audit, the answer to the proxy |

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use palisade_runtime::{Request, Response};

use super::exchange::Exchange;
use super::{Head, Next, Outcome, Pipeline, Route, Routes, Scope};
use crate::body::Body;
use crate::error::Error;

/// One request carried by another proxy, between its phases.
pub(crate) struct Carried<'p> {
    pipeline: &'p Pipeline,
    routes: Arc<Routes>,
    ex: Exchange,
    route: Option<Arc<Route>>,
    head: Option<Head>,
    scope: Option<Scope<'p>>,
    /// The request as the policies left it, for the response policies.
    request: Option<Request>,
}

/// After the request phases: what the proxy sends upstream, or the answer instead.
pub(crate) enum Carry {
    Forward(Request),
    Respond(Outcome),
}

impl Pipeline {
    /// Phase: admit, for a request another proxy carries; `peer` is the address the
    /// client policies see (see [`crate::envoy`] for which one that is).
    pub(crate) fn carried<B>(&self, req: &http::Request<B>, peer: SocketAddr) -> Carried<'_> {
        let mut ex = Exchange::begin(req, Some(self.ledger.clone()));
        self.trace(&mut ex, req.headers(), peer);
        Carried {
            pipeline: self,
            routes: self.routes.load_full(),
            ex,
            route: None,
            head: None,
            scope: None,
            request: None,
        }
    }
}

impl<'p> Carried<'p> {
    /// The route, once found.
    pub(crate) fn route(&self) -> Option<&Route> {
        self.route.as_deref()
    }

    /// Phases: route, then the head phases. `named` is the route the proxy chose (its
    /// own route's metadata); without it, the request's host, path and method choose.
    pub(crate) async fn head(
        &mut self,
        parts: http::request::Parts,
        peer: SocketAddr,
        named: Option<&str>,
    ) -> Result<(), Error> {
        let route = match named {
            None => self
                .pipeline
                .route(&self.routes, &mut self.ex, &parts.method)?,
            Some(name) => {
                let path = self.ex.path.as_deref().map_err(|_| Error::BadPath)?;
                let host = self.ex.host.as_deref().ok_or(Error::AmbiguousHost)?;
                let route = self
                    .routes
                    .named(name, host, path, &parts.method)
                    .ok_or(Error::NoRoute)?;
                self.ex.routed(
                    &route.tenant,
                    &route.name,
                    &route.upstream.name,
                    route.expose_errors,
                    Some(route.total),
                );
                route
            }
        };
        self.route = Some(route.clone());
        let run = self
            .pipeline
            .head(&self.routes, &route, &mut self.ex, parts, peer);
        let head = AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or(Err(Error::Internal))?;
        self.head = Some(head);
        Ok(())
    }

    /// Whether the request phases read the body (a schema or request policies).
    pub(crate) fn reads_body(&self) -> bool {
        self.route
            .as_ref()
            .is_some_and(|r| !r.policies.request.is_empty() || r.policies.schemas.is_some())
    }

    /// Whether the response phases read the answer's body.
    pub(crate) fn reads_answer(&self) -> bool {
        self.route
            .as_ref()
            .is_some_and(|r| r.policies.read_answer())
    }

    /// The largest request and response bodies the route reads.
    pub(crate) fn limits(&self) -> super::BodyLimits {
        self.route
            .as_ref()
            .map(|r| r.policies.limits)
            .unwrap_or_default()
    }

    /// The request as bound, before any policy: what the head phases alone let through.
    pub(crate) fn bound_request(&self) -> Option<Request> {
        let head = self.head.as_ref()?;
        Some(super::request_of(
            &head.bound.parts,
            head.bound.path.clone(),
            Bytes::new(),
        ))
    }

    /// When the route's total deadline passes (the whole exchange, Envoy's upstream call
    /// included).
    pub(crate) fn deadline(&self) -> Option<tokio::time::Instant> {
        self.route.as_ref().map(|r| self.ex.begun + r.total)
    }

    /// Phases: read body (already whole), schema, request policies.
    pub(crate) async fn request(&mut self, body: Bytes) -> Result<Carry, Error> {
        let (Some(route), Some(head)) = (self.route.clone(), self.head.as_ref()) else {
            return Err(Error::Internal);
        };
        if body.len() as u64 > route.policies.limits.max_body {
            return Err(Error::BodyTooLarge);
        }
        let run = self
            .pipeline
            .request_phases(&route, &mut self.ex, head, body);
        let (scope, next) = AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or(Err(Error::Internal))?;
        self.scope = Some(scope);
        Ok(match next {
            Next::Forward(request) => {
                self.request = Some(request.clone());
                Carry::Forward(request)
            }
            Next::Respond(outcome) => Carry::Respond(outcome),
        })
    }

    /// The request as it must leave for the upstream, headers as the gateway's own
    /// upstream phase sets them ([`super::forward::outbound`]): what only the gateway may
    /// set removed, then the tenant, identity, correlation id, forwarding headers and the
    /// route's upstream credential. Its path is the policies' (no upstream base: the
    /// proxy routes).
    pub(crate) async fn outbound(
        &self,
        request: &Request,
    ) -> Result<super::forward::Outbound, Error> {
        let (Some(route), Some(head)) = (self.route.as_ref(), self.head.as_ref()) else {
            return Err(Error::Internal);
        };
        let credentials = match &route.upstream_auth {
            None => Vec::new(),
            Some(c) => vec![
                c.header(self.pipeline.secrets.as_ref(), &route.tenant)
                    .await?,
            ],
        };
        let base = http::Uri::from_static("http://upstream.invalid");
        super::forward::outbound(
            request,
            super::forward::Target {
                base: &base,
                path: &request.path,
                origin: &head.bound.origin,
                tenant: &route.tenant,
                correlation_id: &self.ex.cid,
                identity: self.ex.identity(),
                reads_response: route.policies.read_answer(),
                credentials,
            },
        )
    }

    /// Phases: response schema, response policies, redaction, on the upstream's answer
    /// as the proxy read it. An encoded or partial body cannot be redacted in context:
    /// refused, as the gateway's own upstream phase does.
    pub(crate) async fn response(&mut self, response: Response) -> Result<Outcome, Error> {
        let (Some(route), Some(scope), Some(request)) =
            (self.route.clone(), self.scope.as_ref(), self.request.take())
        else {
            return Err(Error::Internal);
        };
        if !self.reads_answer() {
            return Ok(Outcome::allowed(super::io::to_http(response)));
        }
        let whole = |name: &str| {
            response.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case(name)
                    && !(name == "content-encoding" && v.eq_ignore_ascii_case("identity"))
            })
        };
        if response.status == 206 || whole("content-range") || whole("content-encoding") {
            return Err(Error::Redaction("response_not_whole"));
        }
        if response.body.len() as u64 > route.policies.limits.max_response {
            return Err(Error::Redaction("response_too_large"));
        }
        let run = route
            .policies
            .on_response(scope, request, response, &mut self.ex.trace);
        AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or(Err(Error::Internal))
    }

    /// Phases: audit and the answer. The audit block is appended before the proxy
    /// hears anything: no block, no answer (503 `audit_unavailable`).
    pub(crate) async fn finish(self, result: Result<Outcome, Error>) -> http::Response<Body> {
        let metrics = self.pipeline.metrics.clone();
        let Carried {
            ex, head, scope, ..
        } = self;
        let response = ex.finish(result, Some(&metrics)).await;
        drop((scope, head));
        response
    }
}

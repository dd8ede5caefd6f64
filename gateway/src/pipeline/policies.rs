//! The policy phases every embedding runs: read the body under its limits, run the
//! request policies, read the answer whole, run the response policies, redact. `palisade
//! serve` runs them around its upstream ([`super::Pipeline`]), [`PolicyLayer`] around an
//! inner tower service: one implementation of each.
//!
//! [`PolicyLayer`]: crate::PolicyLayer

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header;
use palisade_runtime::{Context, Decision, InvocationPool, Request, Response};

use super::exchange::Verdict;
use super::io::{self, ReadError};
use crate::body::Body;
use crate::chain::{Chain, Observer, POLICY_INVALID_OUTPUT, Trace};
use crate::error::Error;
use crate::redaction::Redactor;
use crate::schema::{self, ResponseFail, Schemas, Side};

/// How much of a message the policies read, and how long the caller has to send it.
/// The one place these defaults are written: routes (`max_body_bytes`,
/// `max_response_bytes`, `[server] body_timeout_ms`) and [`PolicyLayer`](crate::PolicyLayer)
/// start from [`BodyLimits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The largest request body; 413 `body_too_large` beyond. 1 MiB by default.
    pub max_body: u64,
    /// The largest response body policies or redaction read; 502 `response_too_large`
    /// beyond. 8 MiB by default.
    pub max_response: u64,
    /// Time for the whole request body to arrive; 408 `body_timeout` after. 30 s by
    /// default.
    pub body_timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_body: 1 << 20,
            max_response: 8 << 20,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The methods a route accepts, from its callers and from its policies alike.
#[derive(Debug, Clone, Default)]
pub(crate) struct Methods(Vec<http::Method>);

impl Methods {
    /// Only `listed` (any method when empty).
    pub(crate) fn new(listed: Vec<http::Method>) -> Self {
        Methods(listed)
    }

    /// Whether `method` is accepted. `TRACE`, `TRACK` and `CONNECT` only when listed: a
    /// trace echoes the request upstream, credentials the gateway added included, and a
    /// tunnel is not a request.
    pub(crate) fn allows(&self, method: &str) -> bool {
        if self.0.is_empty() {
            return !matches!(method, "TRACE" | "TRACK" | "CONNECT");
        }
        self.0.iter().any(|m| m.as_str() == method)
    }

    /// Whether the methods are listed (a more specific route than one taking any).
    pub(crate) fn listed(&self) -> bool {
        !self.0.is_empty()
    }
}

/// A route's policy phases: its chains, its redaction, its limits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies {
    pub(crate) request: Chain,
    pub(crate) response: Chain,
    pub(crate) redactor: Option<Arc<Redactor>>,
    /// The route's request and response schemas.
    pub(crate) schemas: Option<Arc<Schemas>>,
    /// The route's data classification labels.
    pub(crate) classification: Option<Arc<crate::classification::Classification>>,
    pub(crate) limits: BodyLimits,
    pub(crate) methods: Methods,
}

/// What one request's policies run with: the pool, where they report, their context.
pub(crate) struct Scope<'a> {
    pub(crate) pool: &'a InvocationPool,
    pub(crate) observer: Observer,
    pub(crate) ctx: Context,
}

/// The request as the policies see it: the head as bound (`path` normalized), the body
/// as read.
pub(crate) fn request_of(parts: &http::request::Parts, path: String, body: Bytes) -> Request {
    Request {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: io::to_pairs(&parts.headers),
        body,
    }
}

/// After the request policies: send the request on, or answer it.
pub(crate) enum Next {
    Forward(Request),
    Respond(Outcome),
}

/// A response and how the request ended.
pub(crate) struct Outcome {
    pub(crate) response: http::Response<Body>,
    pub(crate) verdict: Verdict,
}

impl Outcome {
    /// The upstream's (or inner service's) answer, maybe changed by the policies.
    pub(crate) fn allowed(response: http::Response<Body>) -> Self {
        Outcome {
            response,
            verdict: Verdict::Allowed,
        }
    }
}

impl Policies {
    /// Whether any policy runs (a request that does waits for the invocation pool).
    pub(crate) fn run_any(&self) -> bool {
        !self.request.is_empty() || !self.response.is_empty()
    }

    /// Whether the answer is read whole (response policies or redaction); otherwise it
    /// is streamed through untouched.
    pub(crate) fn read_answer(&self) -> bool {
        !self.response.is_empty()
            || self.redactor.is_some()
            || self.schemas.as_ref().is_some_and(|s| s.reads_response())
            || self.classification.as_ref().is_some_and(|c| c.reads_body())
    }

    /// Phase: read the request body, by [`BodyLimits::max_body`] and
    /// [`BodyLimits::body_timeout`].
    pub(crate) async fn read_body<B>(&self, body: B) -> Result<Bytes, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        io::read_body(body, self.limits.max_body, self.limits.body_timeout)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => Error::BodyTooLarge,
                ReadError::Timeout => Error::BodyTimeout,
                ReadError::Broken => Error::BadBody,
            })
    }

    /// Phases: validate the body against the route's schema (400 on failure: the policies
    /// only ever see valid input), then the request policies. A policy's own answer is
    /// redacted like any response and ends the request (`denied` from 400 on, else
    /// `responded`); a method the route does not accept is the policy's fault (500).
    pub(crate) async fn on_request(
        &self,
        scope: &Scope<'_>,
        request: Request,
        trace: &mut Trace,
    ) -> Result<Next, Error> {
        if self.schemas.is_some() {
            trace.validated_as = Some((request.method.clone(), request.path.clone()));
        }
        if let Some(schemas) = &self.schemas
            && let Err(invalid) = schemas.request(&request.method, &request.path, &request.body)
        {
            trace
                .detail
                .insert("schema".into(), invalid.audit(Side::Request));
            count_schema_failure(scope, Side::Request, "refused");
            return Err(match invalid {
                schema::Invalid::NoOperation => Error::NoOperation,
                schema::Invalid::NotJson => Error::InvalidBody {
                    cause: "body_not_json",
                    failures: Vec::new(),
                },
                schema::Invalid::Missing => Error::InvalidBody {
                    cause: "body_missing",
                    failures: Vec::new(),
                },
                schema::Invalid::Failed(failures) => Error::InvalidBody {
                    cause: "schema_invalid",
                    failures,
                },
            });
        }
        let decision = self
            .request
            .on_request(scope.pool, &scope.observer, &scope.ctx, request, trace)
            .await?;
        match decision {
            Decision::Continue(r) if self.methods.allows(&r.method) => Ok(Next::Forward(r)),
            Decision::Continue(_) => Err(Error::RequestPolicy {
                cause: POLICY_INVALID_OUTPUT,
                detail: "the route does not allow the method the policies chose".into(),
            }),
            Decision::Respond(own) => {
                let own = self.redact(own, trace)?;
                let verdict = if own.status >= 400 {
                    Verdict::Denied
                } else {
                    Verdict::Responded
                };
                Ok(Next::Respond(Outcome {
                    response: io::to_http(own),
                    verdict,
                }))
            }
        }
    }

    /// Phase: read the answer whole for the response policies, by
    /// [`BodyLimits::max_response`] and `deadline`. A part of a body, or an encoded one,
    /// cannot be redacted or transformed in context: the gateway asked for neither (no
    /// `Range`, no `Accept-Encoding`), so it is refused.
    pub(crate) async fn read_answer_body<B>(
        &self,
        res: http::Response<B>,
        deadline: tokio::time::Instant,
    ) -> Result<Response, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let (parts, body) = res.into_parts();
        let encoded = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if parts.status == http::StatusCode::PARTIAL_CONTENT
            || parts.headers.contains_key(header::CONTENT_RANGE)
            || encoded
        {
            return Err(Error::Redaction("response_not_whole"));
        }
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let body = io::read_body(body, self.limits.max_response, timeout)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => Error::Redaction("response_too_large"),
                ReadError::Timeout => Error::UpstreamDeadline,
                ReadError::Broken => Error::UpstreamReset,
            })?;
        let mut headers = parts.headers;
        io::strip_hop_by_hop(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        Ok(Response {
            status: parts.status.as_u16(),
            headers: io::to_pairs(&headers),
            body,
        })
    }

    /// Phases: validate the upstream's body against the route's response schema, the
    /// response policies, then redaction. Every failure fails the request (502): these
    /// phases may be what keeps PII in. A body that fails its schema under `response_fail
    /// = "report"` goes on, counted and recorded.
    pub(crate) async fn on_response(
        &self,
        scope: &Scope<'_>,
        request: Request,
        response: Response,
        trace: &mut Trace,
    ) -> Result<Outcome, Error> {
        let (method, path) = match &trace.validated_as {
            Some((m, p)) => (m.as_str(), p.as_str()),
            None => (request.method.as_str(), request.path.as_str()),
        };
        if let Some(schemas) = &self.schemas
            && let Err(invalid) = schemas.response(method, path, response.status, &response.body)
        {
            trace
                .detail
                .insert("schema".into(), invalid.audit(Side::Response));
            if schemas.response_fail == ResponseFail::Closed {
                count_schema_failure(scope, Side::Response, "refused");
                return Err(Error::ResponseSchema);
            }
            count_schema_failure(scope, Side::Response, "reported");
        }
        if let Some(c) = &self.classification
            && let Some(label) = c.touched(&response.body)
        {
            trace
                .detail
                .insert("classification".into(), label.name.clone().into());
        }
        let response = if self.response.is_empty() {
            response
        } else {
            let request = Arc::new(request);
            self.response
                .on_response(
                    scope.pool,
                    &scope.observer,
                    &scope.ctx,
                    &request,
                    response,
                    trace,
                )
                .await?
        };
        let response = self.redact(response, trace)?;
        Ok(Outcome::allowed(io::to_http(response)))
    }

    /// Phase: built-in redaction (never fail-open).
    fn redact(&self, mut res: Response, trace: &mut Trace) -> Result<Response, Error> {
        let Some(redactor) = &self.redactor else {
            return Ok(res);
        };
        let redacted = redactor
            .redact_response(&mut res)
            .map_err(|e| Error::Redaction(e.cause()))?;
        trace.redacted.extend(redacted);
        Ok(res)
    }
}

/// Counts a body that failed its schema (`palisade_schema_failures_total`).
fn count_schema_failure(scope: &Scope<'_>, side: Side, outcome: &str) {
    if let Some((metrics, tenant, route)) = &scope.observer.metrics {
        metrics.schema_failure(tenant, route, side.as_str(), outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_any_but_trace_track_connect_unless_listed() {
        let any = Methods::default();
        for m in ["GET", "POST", "PURGE", "PATCH"] {
            assert!(any.allows(m), "{m}");
        }
        for m in ["TRACE", "TRACK", "CONNECT"] {
            assert!(!any.allows(m), "{m}");
        }
        let listed = Methods::new(vec![http::Method::GET, http::Method::TRACE]);
        assert!(listed.allows("GET") && listed.allows("TRACE"));
        assert!(!listed.allows("POST") && !listed.allows("get"));
        assert!(listed.listed() && !any.listed());
    }
}

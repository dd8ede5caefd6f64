//! Why a request did not get the upstream's answer: one HTTP status and one audit cause
//! per variant.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::pipeline::Verdict;

/// A request the pipeline refused or could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No route matches the host, path and method. 404.
    #[error("no route")]
    NoRoute,
    /// The path could mean something else to the upstream than to the gateway: an
    /// encoded slash or dot segment, a backslash, a control byte (see `docs/gateway.md`,
    /// paths). 400, before routing.
    #[error("path refused")]
    BadPath,
    /// The URI's authority (HTTP/2 `:authority`, an absolute-form target) and `Host`
    /// disagree. 400, before routing.
    #[error("ambiguous host")]
    AmbiguousHost,
    /// A bug: the pipeline panicked. 500; the request still gets its audit block.
    #[error("internal error")]
    Internal,
    /// The body is larger than the route allows (declared or sent). 413.
    #[error("request body too large")]
    BodyTooLarge,
    /// The body did not arrive within the body timeout. 408.
    #[error("request body timeout")]
    BodyTimeout,
    /// The body could not be read (the connection broke, malformed chunking). 400.
    #[error("malformed request body")]
    BadBody,
    /// The request body fails the route's JSON Schema (`schema_invalid`), is not JSON
    /// (`body_not_json`) or is empty where the schema requires one (`body_missing`). 400,
    /// before any request policy; the body lists the failing pointers and keywords.
    #[error("request body refused: {cause}")]
    InvalidBody {
        /// `schema_invalid`, `body_not_json` or `body_missing`.
        cause: &'static str,
        /// Where the body failed (the caller's own body: pointers and keywords, never
        /// values).
        failures: Vec<crate::schema::Failure>,
    },
    /// The route's OpenAPI document has no operation for the request's method and path.
    /// 404.
    #[error("no such operation")]
    NoOperation,
    /// No accepted credential, or an invalid one (bad signature, expired, revoked,
    /// unknown). 401 with `WWW-Authenticate`.
    #[error("unauthenticated: {cause}")]
    Unauthenticated {
        /// Why (`token_expired`, `api_key_revoked`, `credentials_missing`, ...).
        cause: &'static str,
        /// The `WWW-Authenticate` value: the schemes the route accepts.
        challenge: String,
    },
    /// A valid caller that may not use this route: another tenant's, missing scope or
    /// role. 403.
    #[error("forbidden: {cause}")]
    Forbidden {
        /// Why (`tenant_mismatch`, `insufficient_scope`, `missing_role`, ...).
        cause: &'static str,
        /// Who was refused (recorded in the audit block).
        subject: String,
        /// A `WWW-Authenticate` value (RFC 6750 `insufficient_scope`), if any.
        challenge: Option<String>,
    },
    /// A module registry request that cannot be done (admin API): 400, 404, 409, 413,
    /// 422 or 503, see [`RegistryError`](crate::registry::RegistryError).
    #[error("registry: {0}")]
    Registry(crate::registry::RegistryError),
    /// The route's upstream credential could not be fetched or decrypted. 503 with
    /// `Retry-After`; nothing is sent upstream.
    #[error("upstream credentials unavailable")]
    UpstreamCredentials,
    /// A token introspection endpoint could not answer. 503 with `Retry-After`.
    #[error("authentication unavailable")]
    AuthUnavailable,
    /// The route already has its limit of requests in flight. 503 with `Retry-After`.
    #[error("route busy")]
    Overloaded,
    /// The gateway is shedding load (in-flight bound, or a standing policy queue). 503
    /// with `Retry-After`.
    #[error("gateway overloaded")]
    Shed,
    /// The tenant already has its `max_in_flight` requests in the pipeline. 429 with
    /// `Retry-After`.
    #[error("tenant concurrency limit")]
    TenantBusy,
    /// A tenant's or route's rate limit. 429 with `Retry-After`.
    #[error("{scope} rate limited")]
    RateLimited {
        /// `tenant` or `route`.
        scope: &'static str,
        /// Seconds until a request would be allowed.
        retry_after: u32,
    },
    /// The tenant's policies have used their fuel budget. 429 with `Retry-After`.
    #[error("tenant CPU budget exhausted")]
    CpuBudget {
        /// Seconds until the budget is positive again.
        retry_after: u32,
    },
    /// The upstream already has its `max_in_flight` requests. 503 with `Retry-After`.
    #[error("upstream saturated")]
    UpstreamSaturated,
    /// The upstream's circuit breaker is open. 503 with `Retry-After`.
    #[error("upstream circuit open")]
    CircuitOpen {
        /// Seconds until the breaker lets a probe through.
        retry_after: u32,
    },
    /// A request policy failed (fail closed); `cause` is the runtime's error kind. 500.
    #[error("request policy failed: {cause}")]
    RequestPolicy {
        /// The runtime error kind (`fuel_exhausted`, ...).
        cause: &'static str,
        /// The error text, shown only when the route sets `expose_errors`.
        detail: String,
    },
    /// A response policy failed (always closed). 502.
    #[error("response policy failed: {cause}")]
    ResponsePolicy {
        /// The runtime error kind.
        cause: &'static str,
        /// The error text, shown only when the route sets `expose_errors`.
        detail: String,
    },
    /// Built-in redaction could not read the body (not JSON, not UTF-8), or the body was
    /// larger than the route lets policies read. 502; nothing unredacted leaves.
    #[error("response could not be redacted: {0}")]
    Redaction(&'static str),
    /// The upstream's response body fails the route's response schema (`response_fail =
    /// "closed"`). 502; the body does not leave.
    #[error("upstream response fails its schema")]
    ResponseSchema,
    /// The upstream refused the connection or could not be reached. 502.
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// The upstream did not answer in time. 504.
    #[error("upstream timeout")]
    UpstreamTimeout,
    /// The route's `total_timeout_ms` passed before the upstream's answer was complete
    /// (retries and hedges included). 504.
    #[error("upstream deadline")]
    UpstreamDeadline,
    /// The upstream broke the connection or sent an invalid response. 502.
    #[error("upstream reset")]
    UpstreamReset,
    /// The audit ledger could not record the request, so its response is withheld. 503.
    #[error("audit ledger unavailable")]
    AuditUnavailable,
    /// Envoy's message could not be answered before its `message_timeout`
    /// (`[envoy] message_timeout_ms`). 504.
    #[error("envoy message timeout")]
    MessageTimeout,
    /// The route reads or changes responses (response policies, redaction, a response
    /// schema), which an ext_authz check never sees: it is served by ext_proc only. 500.
    #[error("route needs ext_proc")]
    NeedsExtProc,
    /// Envoy went on without sending the body the route's phases read (its
    /// `processing_mode` ignored Palisade's override): the answer is withheld. 500.
    #[error("envoy did not send the body")]
    EnvoyBodyNotSent,
    /// Envoy sent the body the route's phases read without `end_of_stream`: in pieces
    /// (`STREAMED` or `BUFFERED_PARTIAL`: its `processing_mode` ignored Palisade's
    /// `BUFFERED` override, and header changes would be dropped, the rest of the body
    /// unseen), or followed by trailers. The answer is withheld. 500.
    #[error("envoy sent part of the body")]
    EnvoyBodyPartial,
}

impl Error {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoRoute => StatusCode::NOT_FOUND,
            Error::BadPath | Error::AmbiguousHost => StatusCode::BAD_REQUEST,
            Error::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Error::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::BadBody | Error::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            Error::NoOperation => StatusCode::NOT_FOUND,
            Error::Registry(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::TenantBusy | Error::RateLimited { .. } | Error::CpuBudget { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::Overloaded
            | Error::Shed
            | Error::UpstreamSaturated
            | Error::CircuitOpen { .. }
            | Error::AuditUnavailable
            | Error::AuthUnavailable
            | Error::UpstreamCredentials => StatusCode::SERVICE_UNAVAILABLE,
            Error::RequestPolicy { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::ResponsePolicy { .. }
            | Error::Redaction(_)
            | Error::ResponseSchema
            | Error::UpstreamUnavailable
            | Error::UpstreamReset => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout | Error::UpstreamDeadline | Error::MessageTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Error::NeedsExtProc | Error::EnvoyBodyNotSent | Error::EnvoyBodyPartial => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The stable name in error bodies, metrics and the audit record's `cause`.
    pub fn cause(&self) -> &'static str {
        match self {
            Error::NoRoute => "no_route",
            Error::BadPath => "bad_path",
            Error::AmbiguousHost => "ambiguous_host",
            Error::Internal => "internal_error",
            Error::BodyTooLarge => "body_too_large",
            Error::BodyTimeout => "body_timeout",
            Error::BadBody => "bad_body",
            Error::InvalidBody { cause, .. } => cause,
            Error::NoOperation => "no_operation",
            Error::ResponseSchema => "response_schema_invalid",
            Error::Overloaded => "route_overloaded",
            Error::Shed => "gateway_overloaded",
            Error::TenantBusy => "tenant_concurrency",
            Error::RateLimited {
                scope: "tenant", ..
            } => "tenant_rate_limited",
            Error::RateLimited { .. } => "route_rate_limited",
            Error::CpuBudget { .. } => "tenant_cpu_budget",
            Error::UpstreamSaturated => "upstream_saturated",
            Error::CircuitOpen { .. } => "upstream_circuit_open",
            Error::UpstreamDeadline => "upstream_deadline",
            Error::Unauthenticated { cause, .. } | Error::Forbidden { cause, .. } => cause,
            Error::AuthUnavailable => "auth_unavailable",
            Error::UpstreamCredentials => "upstream_credentials_unavailable",
            Error::Registry(e) => e.cause(),
            Error::RequestPolicy { cause, .. } | Error::ResponsePolicy { cause, .. } => cause,
            Error::Redaction(cause) => cause,
            Error::UpstreamUnavailable => "upstream_unavailable",
            Error::UpstreamTimeout => "upstream_timeout",
            Error::UpstreamReset => "upstream_reset",
            Error::AuditUnavailable => "audit_unavailable",
            Error::MessageTimeout => "envoy_message_timeout",
            Error::NeedsExtProc => "route_needs_ext_proc",
            Error::EnvoyBodyNotSent => "envoy_body_not_sent",
            Error::EnvoyBodyPartial => "envoy_body_partial",
        }
    }

    /// The audit record's `decision`: [`Verdict::Denied`] for auth,
    /// [`Verdict::Refused`] for limits and malformed requests, [`Verdict::Failed`]
    /// otherwise.
    pub fn decision(&self) -> Verdict {
        match self {
            Error::Unauthenticated { .. } | Error::Forbidden { .. } => Verdict::Denied,
            Error::Registry(crate::registry::RegistryError::Storage(_)) => Verdict::Failed,
            Error::Registry(_) => Verdict::Refused,
            Error::NoRoute
            | Error::BadPath
            | Error::AmbiguousHost
            | Error::BodyTooLarge
            | Error::BodyTimeout
            | Error::BadBody
            | Error::InvalidBody { .. }
            | Error::NoOperation
            | Error::Overloaded
            | Error::Shed
            | Error::TenantBusy
            | Error::RateLimited { .. }
            | Error::CpuBudget { .. }
            | Error::UpstreamSaturated
            | Error::CircuitOpen { .. } => Verdict::Refused,
            _ => Verdict::Failed,
        }
    }

    /// Whether the request got as far as its upstream: the audit record then names the
    /// upstream (it refused, failed or timed out, or its answer failed the response
    /// phases).
    pub fn reached_upstream(&self) -> bool {
        matches!(
            self,
            Error::UpstreamTimeout
                | Error::UpstreamDeadline
                | Error::UpstreamReset
                | Error::UpstreamUnavailable
                | Error::UpstreamSaturated
                | Error::CircuitOpen { .. }
                | Error::ResponsePolicy { .. }
                | Error::Redaction(_)
                | Error::ResponseSchema
        )
    }

    /// The safe response: a JSON body naming the error and the correlation id, nothing
    /// from the guest or the upstream unless `expose` is set.
    pub fn to_response(&self, correlation_id: &str, expose: bool) -> Response<Body> {
        let mut body = serde_json::json!({
            "error": self.public_name(),
            "status": self.status().as_u16(),
            "correlation_id": correlation_id,
        });
        if let Error::Registry(
            crate::registry::RegistryError::Rejected { detail, .. }
            | crate::registry::RegistryError::InUseBy { detail, .. },
        ) = self
        {
            // The uploader's own module: what is wrong with it is theirs to see.
            body["detail"] = detail.as_str().into();
        }
        if let Error::InvalidBody { failures, .. } = self {
            // The caller's own body: where it failed, never what it held.
            body["errors"] = crate::schema::public_errors(failures);
        }
        if expose {
            body["cause"] = self.cause().into();
            if let Error::RequestPolicy { detail, .. } | Error::ResponsePolicy { detail, .. } = self
            {
                body["detail"] = detail.as_str().into();
            }
        }
        let mut res = Response::new(full(Bytes::from(body.to_string())));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        let challenge = match self {
            Error::Unauthenticated { challenge, .. } => Some(challenge.as_str()),
            Error::Forbidden { challenge, .. } => challenge.as_deref(),
            _ => None,
        };
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if matches!(
            self,
            Error::BodyTooLarge | Error::BodyTimeout | Error::BadBody
        ) {
            // The rest of the body was not read: the connection cannot be reused.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }

    /// Seconds for `Retry-After`, for refusals that may succeed later.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::RateLimited { retry_after, .. }
            | Error::CpuBudget { retry_after }
            | Error::CircuitOpen { retry_after } => Some(*retry_after),
            Error::Overloaded
            | Error::Shed
            | Error::TenantBusy
            | Error::UpstreamSaturated
            | Error::AuditUnavailable
            | Error::AuthUnavailable
            | Error::UpstreamCredentials => Some(1),
            _ => None,
        }
    }

    /// Whether this refusal is a limit (counted in `palisade_limit_hits`).
    pub(crate) fn is_limit(&self) -> bool {
        self.retry_after().is_some()
            && !matches!(
                self,
                Error::AuditUnavailable | Error::AuthUnavailable | Error::UpstreamCredentials
            )
            || matches!(
                self,
                Error::BodyTooLarge | Error::BodyTimeout | Error::UpstreamDeadline
            )
    }

    /// What clients see: coarse names that reveal nothing about policies or upstreams.
    fn public_name(&self) -> &'static str {
        match self {
            Error::RequestPolicy { .. } | Error::ResponsePolicy { .. } | Error::Redaction(_) => {
                "policy_failed"
            }
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::Forbidden { .. } => "forbidden",
            other => other.cause(),
        }
    }
}

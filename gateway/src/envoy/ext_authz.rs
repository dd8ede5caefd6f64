//! `envoy.service.auth.v3.Authorization` (ext_authz): one check per request, for routes
//! that need only the request side: route, limits, client addresses, auth, tenant
//! binding, the schema and request policies on what the check carries. Allowed: the
//! headers to set and remove upstream (as the gateway's own upstream phase would send
//! them). Denied: the status, headers and body to send the client.
//!
//! What a check cannot do fails closed with 500 `route_needs_ext_proc`: a route that
//! reads or changes responses (response policies, redaction, a response schema), a
//! policy that changes the body, path or method, or a route whose policies read a body
//! Envoy did not send (`with_request_body`). Every check is one audit block; an allowed
//! one records status 200 (the upstream's answer is never seen).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, address};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    attribute_context::HttpRequest, authorization_server::Authorization, check_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc;
use http_body_util::BodyExt as _;
use tonic::Status;

use super::Settings;
use super::headers;
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::pipeline::envoy::{Carried, Carry};

/// The ext_authz service.
pub(crate) struct ExtAuthz {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) settings: Arc<Settings>,
}

/// gRPC codes in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, Status> {
        let started = Instant::now();
        let envoy = request
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let attributes = request
            .into_inner()
            .attributes
            .ok_or_else(|| Status::invalid_argument("no attributes"))?;
        let http = attributes
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .ok_or_else(|| Status::invalid_argument("no attributes.request.http"))?;
        let req = request_of(http)?;
        let peer = source(&attributes)
            .filter(|_| self.pipeline.trusts_proxy(envoy.ip()))
            .unwrap_or(envoy);
        let named = attributes
            .context_extensions
            .get(super::ROUTE_EXTENSION)
            .cloned()
            .or_else(|| headers::route_name(attributes.route_metadata_context.as_ref()))
            .or_else(|| headers::route_name(attributes.metadata_context.as_ref()));
        // Whether the check carries the whole body: Envoy marks a cut one, and gives the
        // size when it knows it (-1 when it does not).
        let partial = http
            .headers
            .get("x-envoy-auth-partial-body")
            .is_some_and(|v| v == "true");
        let size = http.size;
        let mut c = self.pipeline.carried(&req, peer);
        let (parts, ()) = req.into_parts();
        let sent = parts.headers.clone();
        let body = if http.raw_body.is_empty() {
            Bytes::from(http.body.clone().into_bytes())
        } else {
            Bytes::from(http.raw_body.clone())
        };
        let carried = Checked {
            named,
            body: &body,
            partial,
            size,
        };
        let decided =
            tokio::time::timeout(self.settings.budget(), decide(&mut c, parts, peer, carried))
                .await
                .unwrap_or(Err(Error::MessageTimeout));
        let (tenant, route) = c
            .route()
            .map(|r| (r.tenant.clone(), r.name.clone()))
            .unwrap_or_default();
        let observe = || {
            self.settings
                .metrics
                .envoy_message(&tenant, &route, "check", started.elapsed());
        };
        let response = match decided {
            Ok(Decided::Allow(out)) => {
                let answer = c
                    .finish(Ok(crate::pipeline::Outcome::allowed(http::Response::new(
                        crate::body::full(Bytes::new()),
                    ))))
                    .await;
                match allow(&sent, out, answer.headers()) {
                    Ok(ok) if answer.status() == http::StatusCode::OK => ok,
                    Ok(_) => deny(answer).await,
                    Err(m) => return Err(m.into()),
                }
            }
            Ok(Decided::Respond(outcome)) => deny(c.finish(Ok(outcome)).await).await,
            Err(e) => {
                let overload = self.settings.unavailable(&e);
                let answer = c.finish(Err(e)).await;
                if overload {
                    observe();
                    return Err(Status::unavailable("palisade is overloaded"));
                }
                deny(answer).await
            }
        };
        observe();
        Ok(tonic::Response::new(response))
    }
}

enum Decided {
    Allow(crate::pipeline::forward::Outbound),
    Respond(crate::pipeline::Outcome),
}

/// What the check says of the request beyond its head.
struct Checked<'a> {
    named: Option<String>,
    body: &'a Bytes,
    partial: bool,
    size: i64,
}

/// The request phases, and what a check cannot carry refused.
async fn decide(
    c: &mut Carried<'_>,
    parts: http::request::Parts,
    peer: SocketAddr,
    carried: Checked<'_>,
) -> Result<Decided, Error> {
    let Checked {
        named,
        body,
        partial,
        size,
    } = carried;
    let path = parts.uri.path_and_query().map(|p| p.to_string());
    let method = parts.method.clone();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    // No body in the check is no body only when nothing says there is one: a length,
    // chunked, or a size Envoy did not know on a method that carries bodies.
    let bodiless = matches!(
        method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::DELETE
    );
    let missing = body.is_empty() && (declared || size > 0 || (size < 0 && !bodiless));
    let cut = partial || (size > 0 && (body.len() as i64) < size);
    c.head(parts, peer, named.as_deref()).await?;
    if c.reads_answer() || (c.reads_body() && (missing || cut)) {
        return Err(Error::NeedsExtProc);
    }
    match c.request(body.clone()).await? {
        Carry::Respond(outcome) => Ok(Decided::Respond(outcome)),
        Carry::Forward(request) => {
            let out = c.outbound(&request).await?;
            if request.body != *body
                || out.method != method
                || out.uri().path_and_query().map(|p| p.to_string()) != path
            {
                return Err(Error::NeedsExtProc);
            }
            Ok(Decided::Allow(out))
        }
    }
}

/// The head Envoy describes: `header_map` (raw values) when sent, else `headers`.
fn request_of(http: &HttpRequest) -> Result<http::Request<()>, Status> {
    let mut pseudo = vec![
        (":method", http.method.as_bytes()),
        (":authority", http.host.as_bytes()),
        (":scheme", http.scheme.as_bytes()),
    ];
    // `path` carries the query.
    pseudo.push((":path", http.path.as_bytes()));
    let pseudo = pseudo.into_iter().filter(|(_, v)| !v.is_empty());
    let req = match &http.header_map {
        Some(map) => headers::request_of(
            pseudo.chain(headers::pairs(map).filter(|(n, _)| !n.starts_with(':'))),
        ),
        None => headers::request_of(
            pseudo.chain(
                http.headers
                    .iter()
                    .filter(|(n, _)| !n.starts_with(':'))
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
            ),
        ),
    };
    Ok(req?)
}

/// The client's address from `attributes.source`.
fn source(attributes: &AttributeContext) -> Option<SocketAddr> {
    let address = attributes
        .source
        .as_ref()?
        .address
        .as_ref()?
        .address
        .as_ref()?;
    let address::Address::SocketAddress(s) = address else {
        return None;
    };
    let ip: std::net::IpAddr = s.address.parse().ok()?;
    let port = match s.port_specifier {
        Some(
            envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p),
        ) => u16::try_from(p).unwrap_or(0),
        _ => 0,
    };
    Some(SocketAddr::new(ip, port))
}

/// Allowed: the upstream headers as the gateway would send them, the correlation id
/// back to the client.
fn allow(
    sent: &http::HeaderMap,
    out: crate::pipeline::forward::Outbound,
    answer: &http::HeaderMap,
) -> Result<CheckResponse, headers::Malformed> {
    let mut mutation = headers::mutation(sent, out.headers(), &[]).unwrap_or_default();
    headers::strip_reserved(&mut mutation, out.headers());
    let back = answer
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(|cid| HeaderValueOption {
            header: Some(HeaderValue {
                key: "x-correlation-id".into(),
                value: cid.into(),
                ..HeaderValue::default()
            }),
            append_action: 2, // OVERWRITE_IF_EXISTS_OR_ADD
            ..HeaderValueOption::default()
        });
    Ok(CheckResponse {
        status: Some(rpc::Status {
            code: OK,
            ..rpc::Status::default()
        }),
        http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
            headers: headers::for_authz(mutation.set_headers)?,
            headers_to_remove: mutation.remove_headers,
            response_headers_to_add: back.into_iter().collect(),
            ..OkHttpResponse::default()
        })),
        ..CheckResponse::default()
    })
}

/// Denied: the pipeline's answer (a refusal, a policy's own response) for the client.
async fn deny(answer: http::Response<crate::body::Body>) -> CheckResponse {
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let headers = headers::mutation(&http::HeaderMap::new(), &parts.headers, &[])
        .map(|m| m.set_headers)
        .and_then(|h| headers::for_authz(h).ok())
        .unwrap_or_default();
    CheckResponse {
        status: Some(rpc::Status {
            code: PERMISSION_DENIED,
            ..rpc::Status::default()
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(parts.status.as_u16()),
                }),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
        )),
        ..CheckResponse::default()
    }
}

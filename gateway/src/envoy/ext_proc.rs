//! `envoy.service.ext_proc.v3.ExternalProcessor`: one gRPC stream per HTTP request
//! Envoy carries, answered message by message with the pipeline's phases
//! ([`crate::pipeline::envoy`]):
//!
//! 1. `request_headers`: route, limits, client addresses, auth, tenant binding. A
//!    refusal is an `immediate_response`. A route whose schema or request policies read
//!    the body gets it: the answer overrides the processing mode to `BUFFERED` (Envoy
//!    needs `allow_mode_override`), and the response body too when response policies,
//!    redaction or a response schema read it; every other route's bodies never reach
//!    Palisade.
//! 2. `request_body` (or the headers, when there is no body to wait for): the request
//!    policies; their changes go back as a header and body mutation, their own answer
//!    as an `immediate_response`.
//! 3. `response_headers`, `response_body`: the response phases; the audit block is
//!    appended before the last answer, which carries the changes (or the failure, as an
//!    `immediate_response`).
//!
//! Overload (`gateway_overloaded`, `route_overloaded`) is a gRPC `UNAVAILABLE` after the
//! block is appended, so that Envoy's `failure_mode_allow` decides, as Envoy operators
//! expect. Envoy's own mistakes (no `request_headers` first, a header that is not HTTP)
//! are `INVALID_ARGUMENT`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    ProcessingMode, processing_mode::BodySendMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeadersResponse, ImmediateResponse,
    ProcessingRequest, ProcessingResponse, TrailersResponse, body_mutation,
    common_response::ResponseStatus, external_processor_server::ExternalProcessor,
    processing_request::Request as Message, processing_response::Response as Answer,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::Settings;
use super::headers::{self, Malformed};
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::pipeline::envoy::{Carried, Carry};

/// The ext_proc service.
pub(crate) struct ExtProc {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) settings: Arc<Settings>,
}

type Sender = mpsc::Sender<Result<ProcessingResponse, Status>>;

#[tonic::async_trait]
impl ExternalProcessor for ExtProc {
    type ProcessStream = ReceiverStream<Result<ProcessingResponse, Status>>;

    async fn process(
        &self,
        request: tonic::Request<Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Self::ProcessStream>, Status> {
        let envoy = request
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        // The route Envoy's own route names, per route, in the stream's gRPC metadata
        // (`ExtProcPerRoute.overrides.grpc_initial_metadata`): the operator's, never the
        // client's.
        let named = request
            .metadata()
            .get(super::ROUTE_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(2);
        let pipeline = self.pipeline.clone();
        let settings = self.settings.clone();
        tokio::spawn(async move {
            let mut talk = Talk {
                inbound: &mut inbound,
                tx: &tx,
                settings: &settings,
            };
            if let Err(status) = talk.exchange(&pipeline, envoy, named).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// One stream's conversation.
struct Talk<'a> {
    inbound: &'a mut Streaming<ProcessingRequest>,
    tx: &'a Sender,
    settings: &'a Settings,
}

impl From<Malformed> for Status {
    fn from(m: Malformed) -> Self {
        Status::invalid_argument(m.0)
    }
}

impl Talk<'_> {
    async fn next(&mut self) -> Result<Option<Message>, Status> {
        Ok(self.inbound.message().await?.and_then(|m| m.request))
    }

    async fn send(&self, answer: Answer, mode: Option<ProcessingMode>) -> Result<(), Status> {
        let response = ProcessingResponse {
            response: Some(answer),
            mode_override: mode,
            ..ProcessingResponse::default()
        };
        self.tx
            .send(Ok(response))
            .await
            .map_err(|_| Status::cancelled("envoy left"))
    }

    /// Runs `phase` by `deadline`: the budget of the message being answered.
    async fn timed<T>(
        &self,
        deadline: tokio::time::Instant,
        phase: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout_at(deadline, phase)
            .await
            .unwrap_or(Err(Error::MessageTimeout))
    }

    /// The deadline of a message received now.
    fn budget(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.settings.budget()
    }

    /// Reads the body Envoy sends: `BUFFERED`, so one message holds all of it, by `max`
    /// bytes and `wait`. `Ok(Err(..))` is the request's failure, answered to
    /// Envoy; `Err` ends the stream. A headers message instead of the body, or a body
    /// without `end_of_stream` (Envoy ignored the override and streams it in pieces,
    /// where the policies' header changes would be dropped and the rest of the body
    /// would pass unseen; or trailers follow), fails closed.
    async fn body(
        &mut self,
        response: bool,
        max: u64,
        wait: std::time::Duration,
    ) -> Result<Result<Bytes, Error>, Status> {
        let message = match tokio::time::timeout(wait, self.next()).await {
            Err(_) if response => return Ok(Err(Error::UpstreamDeadline)),
            Err(_) => return Ok(Err(Error::BodyTimeout)),
            Ok(m) => m?,
        };
        let chunk = match (message, response) {
            (Some(Message::RequestBody(b)), false) | (Some(Message::ResponseBody(b)), true) => b,
            (Some(Message::ResponseHeaders(_)), _) => return Ok(Err(Error::EnvoyBodyNotSent)),
            (Some(_), _) => return Err(Status::invalid_argument("expected a body message")),
            (None, _) => return Err(Status::cancelled("envoy left before the body")),
        };
        if !chunk.end_of_stream {
            return Ok(Err(Error::EnvoyBodyPartial));
        }
        if chunk.body.len() as u64 > max {
            return Ok(Err(if response {
                Error::Redaction("response_too_large")
            } else {
                Error::BodyTooLarge
            }));
        }
        Ok(Ok(Bytes::from(chunk.body)))
    }

    /// The whole exchange, from `request_headers` to the last answer.
    async fn exchange(
        &mut self,
        pipeline: &Pipeline,
        envoy: SocketAddr,
        named: Option<String>,
    ) -> Result<(), Status> {
        let first = match self.inbound.message().await? {
            Some(m) => m,
            None => return Ok(()),
        };
        let started = Instant::now();
        let deadline = self.budget();
        let Some(Message::RequestHeaders(h)) = first.request else {
            return Err(Status::invalid_argument(
                "the first message must be request_headers",
            ));
        };
        let empty = HeaderMap::default();
        let req = headers::request_of(headers::pairs(h.headers.as_ref().unwrap_or(&empty)))?;
        // Envoy's word on the client's address counts when Envoy is a trusted proxy.
        let peer = headers::source_address(&first.attributes)
            .filter(|_| pipeline.trusts_proxy(envoy.ip()))
            .unwrap_or(envoy);
        let named = named.or_else(|| headers::route_name(first.metadata_context.as_ref()));
        let mut c = pipeline.carried(&req, peer);
        let (parts, ()) = req.into_parts();
        let mut sent = Sent {
            headers: parts.headers.clone(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            method: parts.method.clone(),
        };
        let declared = declared_length(&parts.headers);
        if let Err(e) = self
            .timed(deadline, c.head(parts, peer, named.as_deref()))
            .await
        {
            return self.refuse(c, e, "request_headers", started).await;
        }
        let limits = c.limits();
        if declared.is_some_and(|n| n > limits.max_body) {
            return self
                .refuse(c, Error::BodyTooLarge, "request_headers", started)
                .await;
        }
        let reads_body = c.reads_body() && !h.end_of_stream;
        let mode = ProcessingMode {
            request_body_mode: if reads_body {
                BodySendMode::Buffered
            } else {
                BodySendMode::None
            } as i32,
            response_body_mode: if c.reads_answer() {
                BodySendMode::Buffered
            } else {
                BodySendMode::None
            } as i32,
            ..ProcessingMode::default()
        };
        let (body, message, started, deadline) = if reads_body {
            // What the head phases alone decide (the caller's gateway-only headers gone,
            // the tenant's set) goes now, whatever Envoy does next.
            let bound = c.bound_request().ok_or(Status::internal("no head"))?;
            let out = match self.timed(deadline, c.outbound(&bound)).await {
                Ok(out) => out,
                Err(e) => return self.refuse(c, e, "request_headers", started).await,
            };
            let common = CommonResponse {
                header_mutation: request_mutation(&mut sent, &out),
                ..CommonResponse::default()
            };
            self.send(
                Answer::RequestHeaders(HeadersResponse {
                    response: Some(common),
                }),
                Some(mode),
            )
            .await?;
            self.observe(&c, "request_headers", started);
            let body = self
                .body(false, limits.max_body, limits.body_timeout)
                .await?;
            let started = Instant::now();
            match body {
                Ok(b) => (b, "request_body", started, self.budget()),
                Err(e) => return self.refuse(c, e, "request_body", started).await,
            }
        } else {
            (Bytes::new(), "request_headers", started, deadline)
        };
        let forward = match self.timed(deadline, c.request(body.clone())).await {
            Ok(Carry::Forward(request)) => request,
            Ok(Carry::Respond(outcome)) => {
                let labels = Labels::of(&c);
                let answer = c.finish(Ok(outcome)).await;
                return self.immediate(&labels, answer, message, started).await;
            }
            Err(e) => return self.refuse(c, e, message, started).await,
        };
        let out = match self.timed(deadline, c.outbound(&forward)).await {
            Ok(out) if out.method != sent.method => {
                // Envoy applies `:method` only with `allow_all_routing`, and otherwise
                // drops it without a word: refused, so the block never names a method
                // the upstream did not see.
                let e = Error::RequestPolicy {
                    cause: crate::pipeline::POLICY_INVALID_OUTPUT,
                    detail: "behind Envoy a policy cannot change the method".into(),
                };
                return self.refuse(c, e, message, started).await;
            }
            Ok(out) => out,
            Err(e) => return self.refuse(c, e, message, started).await,
        };
        let mut common = CommonResponse {
            header_mutation: request_mutation(&mut sent, &out),
            ..CommonResponse::default()
        };
        if forward.body != body {
            let m = common.header_mutation.get_or_insert_with(Default::default);
            m.remove_headers.push("content-length".into());
            common.body_mutation = Some(replace(forward.body.clone()));
            if !reads_body {
                common.status = ResponseStatus::ContinueAndReplace as i32;
            }
        }
        let answer = if reads_body {
            Answer::RequestBody(BodyResponse {
                response: Some(common),
            })
        } else {
            Answer::RequestHeaders(HeadersResponse {
                response: Some(common),
            })
        };
        self.send(answer, (!reads_body).then_some(mode)).await?;
        self.observe(&c, message, started);
        self.respond(c).await
    }

    /// The response side: its phases, the audit block, the last answer.
    async fn respond(&mut self, mut c: Carried<'_>) -> Result<(), Status> {
        // Envoy's upstream call is bounded by the route's total deadline, as the gateway's
        // own is: past it the block says so and the route's slots are released.
        let total = c
            .deadline()
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(30));
        let h = loop {
            let next = match tokio::time::timeout_at(total, self.next()).await {
                Ok(next) => next?,
                Err(_) => {
                    let _ = c.finish(Err(Error::UpstreamDeadline)).await;
                    return Err(Status::deadline_exceeded(
                        "the route's total deadline passed",
                    ));
                }
            };
            match next {
                Some(Message::ResponseHeaders(h)) => break h,
                // Trailers are not asked for; what comes anyway is passed on unchanged.
                Some(Message::RequestBody(_)) => {
                    self.send(Answer::RequestBody(BodyResponse::default()), None)
                        .await?;
                }
                Some(Message::RequestTrailers(_)) => {
                    self.send(Answer::RequestTrailers(TrailersResponse::default()), None)
                        .await?;
                }
                Some(_) => return Err(Status::invalid_argument("expected response_headers")),
                // Envoy left (the client went away, the upstream failed before answering):
                // the block says client_closed.
                None => return Ok(()),
            }
        };
        let mut started = Instant::now();
        let empty = HeaderMap::default();
        let (status, pairs) = headers::response_of(h.headers.as_ref().unwrap_or(&empty))?;
        let reads_body = c.reads_answer() && !h.end_of_stream;
        let mut message = "response_headers";
        let body = if reads_body {
            self.send(Answer::ResponseHeaders(HeadersResponse::default()), None)
                .await?;
            self.observe(&c, message, started);
            let max = c.limits().max_response;
            let wait = total.saturating_duration_since(tokio::time::Instant::now());
            let body = self.body(true, max, wait).await?;
            started = Instant::now();
            message = "response_body";
            match body {
                Ok(b) => b,
                Err(e) => return self.refuse(c, e, message, started).await,
            }
        } else {
            Bytes::new()
        };
        let before = crate::pipeline::io::to_map(&pairs);
        let upstream = palisade_runtime::Response {
            status,
            headers: pairs,
            body: body.clone(),
        };
        let deadline = self.budget();
        let outcome = match self.timed(deadline, c.response(upstream)).await {
            Ok(o) => o,
            Err(e) => return self.refuse(c, e, message, started).await,
        };
        let labels = Labels::of(&c);
        let answer = c.finish(Ok(outcome)).await;
        if answer.status().as_u16() != status {
            // The block could not be appended (or a policy changed the status): the
            // response Envoy holds is not the one to send.
            return self.immediate(&labels, answer, message, started).await;
        }
        let (parts, new_body) = answer.into_parts();
        let mut common = CommonResponse {
            header_mutation: headers::mutation(&before, &parts.headers, &[]),
            ..CommonResponse::default()
        };
        let new_body = collect(new_body).await;
        if new_body != body {
            let m = common.header_mutation.get_or_insert_with(Default::default);
            m.remove_headers.push("content-length".into());
            common.body_mutation = Some(replace(new_body));
            if !reads_body {
                common.status = ResponseStatus::ContinueAndReplace as i32;
            }
        }
        let answer = if reads_body {
            Answer::ResponseBody(BodyResponse {
                response: Some(common),
            })
        } else {
            Answer::ResponseHeaders(HeadersResponse {
                response: Some(common),
            })
        };
        self.send(answer, None).await?;
        labels.observe(self.settings, message, started);
        Ok(())
    }

    /// Ends the exchange on `e`: the block is appended, then Envoy is told, by an
    /// immediate response or, for overload, a gRPC `UNAVAILABLE`.
    async fn refuse(
        &mut self,
        c: Carried<'_>,
        e: Error,
        message: &'static str,
        started: Instant,
    ) -> Result<(), Status> {
        let overload = self.settings.unavailable(&e);
        let labels = Labels::of(&c);
        let answer = c.finish(Err(e)).await;
        if overload {
            labels.observe(self.settings, message, started);
            return Err(Status::unavailable("palisade is overloaded"));
        }
        self.immediate(&labels, answer, message, started).await
    }

    /// Sends `answer` (a refusal, a policy's own answer) as Envoy's immediate response.
    async fn immediate(
        &mut self,
        labels: &Labels,
        answer: http::Response<crate::body::Body>,
        message: &'static str,
        started: Instant,
    ) -> Result<(), Status> {
        let (parts, body) = answer.into_parts();
        let body = collect(body).await;
        let headers = headers::mutation(&http::HeaderMap::new(), &parts.headers, &[]);
        let immediate = ImmediateResponse {
            status: Some(HttpStatus {
                code: i32::from(parts.status.as_u16()),
            }),
            headers,
            body: body.to_vec(),
            details: "palisade".into(),
            ..ImmediateResponse::default()
        };
        self.send(Answer::ImmediateResponse(immediate), None)
            .await?;
        labels.observe(self.settings, message, started);
        Ok(())
    }

    fn observe(&self, c: &Carried<'_>, message: &str, started: Instant) {
        Labels::of(c).observe(self.settings, message, started);
    }
}

/// What the request Envoy sent looked like, for the mutation.
struct Sent {
    headers: http::HeaderMap,
    path: String,
    method: http::Method,
}

/// Who a measurement is about, kept past [`Carried::finish`].
struct Labels {
    tenant: String,
    route: String,
}

impl Labels {
    fn of(c: &Carried<'_>) -> Self {
        let (tenant, route) = c
            .route()
            .map(|r| (r.tenant.clone(), r.name.clone()))
            .unwrap_or_default();
        Labels { tenant, route }
    }

    fn observe(&self, settings: &Settings, message: &str, started: Instant) {
        settings
            .metrics
            .envoy_message(&self.tenant, &self.route, message, started.elapsed());
    }
}

fn replace(body: Bytes) -> BodyMutation {
    BodyMutation {
        mutation: Some(body_mutation::Mutation::Body(body.to_vec())),
    }
}

/// A body the pipeline made (a policy's, an error's): already in memory.
async fn collect(body: crate::body::Body) -> Bytes {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// The mutation making the request Envoy holds (`sent`) into `out`, which Envoy then
/// holds: `:path` when it changed, every reserved name removed even when Envoy did not
/// show it to Palisade ([`headers::RESERVED`]).
fn request_mutation(
    sent: &mut Sent,
    out: &crate::pipeline::forward::Outbound,
) -> Option<envoy_types::pb::envoy::service::ext_proc::v3::HeaderMutation> {
    let mut pseudo = Vec::new();
    let path = out
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if path != sent.path {
        pseudo.push((":path", path.clone()));
    }
    let mut m = headers::mutation(&sent.headers, out.headers(), &pseudo).unwrap_or_default();
    headers::strip_reserved(&mut m, out.headers());
    sent.headers = out.headers().clone();
    sent.path = path;
    Some(m)
}

/// The body length the request declares (`content-length`), if any.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

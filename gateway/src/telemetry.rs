//! OpenTelemetry traces (`[traces]`; `docs/operations.md#traces`).
//!
//! A sampled request becomes a server span (`palisade.request`) with a child per phase
//! (`route`, `admit`, `auth`, `bind_tenant`, `read_body`, `request_policies`,
//! `response_policies`), one per policy invocation (`policy NAME`: fuel, memory,
//! duration and outcome as attributes) and a client span for the upstream call, whose
//! context goes upstream in `traceparent` (W3C Trace Context). Spans carry names,
//! numbers and outcomes, never values: no path, query, header or body.
//!
//! A caller's `traceparent` is honoured (the request joins its trace and follows its
//! sampling decision) only from trusted callers (`trust_traceparent`: by default nobody;
//! `"proxies"` for the `[server] trusted_proxies`). Anyone else starts a new trace, so a
//! client cannot steer sampling or splice itself into the upstream's traces.
//!
//! Spans go through the OpenTelemetry SDK's batch processor (a bounded queue and a
//! thread of its own: a full queue drops spans, never requests) to an OTLP/HTTP
//! (protobuf) collector, sent with the gateway's own hyper and rustls client. Without
//! `[traces]` none of this exists: the pipeline holds no tracer and records nothing.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, Tracer,
};
use serde::Deserialize;

use crate::config::de::millis;

/// `[traces]`: where spans go and which requests make them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The collector's OTLP/HTTP traces URL (`http://collector:4318/v1/traces`, or
    /// `https://`).
    pub endpoint: String,
    /// Share of new traces sampled, 0 to 1. A trusted caller's decision wins. By default
    /// 1.
    #[serde(default = "d::sample")]
    pub sample: f64,
    /// Whose `traceparent` is honoured: `"none"`, `"proxies"` (the `[server]
    /// trusted_proxies`: for proxies that set or strip it themselves; many pass a
    /// client's through) or `"all"`. By default `"none"`.
    #[serde(default)]
    pub trust_traceparent: Trust,
    /// `service.name` of the spans. By default `palisade`.
    #[serde(default = "d::service")]
    pub service_name: String,
    /// How long one export may take (`timeout_ms`). By default 5 s.
    #[serde(
        rename = "timeout_ms",
        default = "d::timeout",
        deserialize_with = "millis"
    )]
    pub timeout: Duration,
    /// Spans held for export at most; more are dropped. By default 4,096.
    #[serde(default = "d::queue")]
    pub max_queue: usize,
}

/// Whose `traceparent` a gateway honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// No caller: every request starts a trace.
    #[default]
    None,
    /// The `[server] trusted_proxies`.
    Proxies,
    /// Every caller.
    All,
}

impl Config {
    /// What is wrong with it, as `(key, message)`.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match self.endpoint.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => out.push((
                "traces.endpoint",
                "must be an http:// or https:// URL".into(),
            )),
        }
        if !(0.0..=1.0).contains(&self.sample) {
            out.push(("traces.sample", "must be between 0 and 1".into()));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            out.push(("traces.timeout_ms", "must be 1-60,000".into()));
        }
        // The SDK allocates the whole queue at start.
        if !(1..=1_000_000).contains(&self.max_queue) {
            out.push(("traces.max_queue", "must be 1-1,000,000".into()));
        }
        out
    }
}

/// The tracer of a pipeline with `[traces]`.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
    tracer: Tracer,
    trust: Trust,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The tracer `cfg` (checked) describes. Exports run on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// Why the exporter cannot be built (no runtime, an unusable endpoint).
    pub(crate) fn new(cfg: &Config) -> Result<Arc<Self>, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "traces: needs a Tokio runtime".to_string())?;
        let client = Exporter::new(runtime, cfg.timeout)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(cfg.endpoint.clone())
            .with_timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("traces: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(cfg.max_queue)
            .with_scheduled_delay(Duration::from_millis(500))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(cfg.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                cfg.sample,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("palisade");
        Ok(Arc::new(Telemetry {
            provider,
            tracer,
            trust: cfg.trust_traceparent,
        }))
    }

    /// Whose `traceparent` counts.
    pub(crate) fn trust(&self) -> Trust {
        self.trust
    }

    /// Starts a request's trace: under the caller's `traceparent` when `trusted`.
    pub(crate) fn start(self: &Arc<Self>, headers: &HeaderMap, trusted: bool) -> Arc<Spans> {
        let parent = if trusted {
            TraceContextPropagator::new().extract(&HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let root = self
            .tracer
            .span_builder("palisade.request")
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        let recording = root.is_recording();
        Arc::new(Spans {
            telemetry: self.clone(),
            cx: parent.with_span(root),
            recording,
            upstream: Mutex::new(None),
        })
    }

    /// Sends the spans still queued and stops the export thread (blocks until the
    /// collector answered or timed out).
    pub(crate) fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// One request's spans: the server span (in `cx`), and the upstream call's while it
/// runs.
pub(crate) struct Spans {
    telemetry: Arc<Telemetry>,
    cx: Context,
    /// Whether the trace is sampled (else nothing below records).
    recording: bool,
    upstream: Mutex<Option<Span>>,
}

impl std::fmt::Debug for Spans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spans")
            .field("recording", &self.recording)
            .finish()
    }
}

impl Spans {
    /// When a phase starts, if anything records it.
    pub(crate) fn clock(&self) -> Option<SystemTime> {
        self.recording.then(SystemTime::now)
    }

    /// A finished child span: `name` from `start` to now, failed with `error` if any.
    pub(crate) fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        start: SystemTime,
        attributes: Vec<KeyValue>,
        error: Option<&'static str>,
    ) {
        if !self.recording {
            return;
        }
        let tracer = &self.telemetry.tracer;
        let mut span = tracer
            .span_builder(name)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.cx);
        if let Some(cause) = error {
            span.set_status(Status::error(cause));
        }
        span.end();
    }

    /// A policy invocation that just ended.
    pub(crate) fn policy(
        &self,
        name: &str,
        phase: &'static str,
        stats: &palisade_runtime::Stats,
        outcome: &'static str,
    ) {
        if !self.recording {
            return;
        }
        let start = SystemTime::now()
            .checked_sub(stats.duration)
            .unwrap_or_else(SystemTime::now);
        let attributes = vec![
            KeyValue::new("palisade.policy", name.to_string()),
            KeyValue::new("palisade.phase", phase),
            KeyValue::new("palisade.fuel", stats.fuel as i64),
            KeyValue::new("palisade.memory_peak_bytes", stats.memory_peak as i64),
            KeyValue::new("palisade.outcome", outcome),
        ];
        let error = (outcome != "continue" && outcome != "respond").then_some(outcome);
        self.child(format!("policy {name}"), start, attributes, error);
    }

    /// Starts the upstream call's client span; sets `traceparent` (and drops any
    /// `tracestate` the caller sent) in `headers` to it.
    pub(crate) fn upstream_start(&self, upstream: &str, headers: &mut HeaderMap) {
        let tracer = &self.telemetry.tracer;
        let span = tracer
            .span_builder("upstream")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("palisade.upstream", upstream.to_string())])
            .start_with_context(tracer, &self.cx);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        headers.remove("traceparent");
        headers.remove("tracestate");
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
        *self.upstream.lock().expect("upstream span lock") = Some(span);
    }

    /// Ends the upstream call's span with its status or error.
    pub(crate) fn upstream_end(&self, status: Result<u16, &'static str>) {
        let Some(mut span) = self.upstream.lock().expect("upstream span lock").take() else {
            return;
        };
        match status {
            Ok(code) => {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 500 {
                    span.set_status(Status::error("upstream 5xx"));
                }
            }
            Err(cause) => span.set_status(Status::error(cause)),
        }
        span.end();
    }

    /// Ends the server span with what the audit record says of the request.
    pub(crate) fn finish(&self, attributes: Vec<KeyValue>, status: u16, cause: Option<&str>) {
        self.upstream_end(Err("cancelled"));
        let span = self.cx.span();
        span.set_attributes(attributes);
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(cause.unwrap_or("error").to_string()));
        }
        span.end();
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is no state: not sent.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The OTLP exporter's HTTP client: the gateway's hyper + rustls (system roots), run on
/// the gateway's runtime (the SDK's batch thread only waits for it), with a timeout and
/// a bounded response.
#[derive(Debug, Clone)]
struct Exporter {
    runtime: tokio::runtime::Handle,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    timeout: Duration,
}

impl Exporter {
    fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("traces: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Exporter {
            runtime,
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for Exporter {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let send = async move {
            let (parts, body) = request.into_parts();
            let response = tokio::time::timeout(
                timeout,
                client.request(http::Request::from_parts(parts, Full::new(body))),
            )
            .await
            .map_err(|_| HttpError::from("timed out"))??;
            let (parts, body) = response.into_parts();
            // A collector's answer is small; more is not read.
            let body = Limited::new(body, 64 * 1024)
                .collect()
                .await
                .map_err(|e| HttpError::from(e.to_string()))?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        self.runtime
            .spawn(send)
            .await
            .map_err(|e| HttpError::from(e.to_string()))?
    }
}

mod d {
    use std::time::Duration;

    pub(super) fn sample() -> f64 {
        1.0
    }
    pub(super) fn service() -> String {
        "palisade".into()
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn queue() -> usize {
        4096
    }
}

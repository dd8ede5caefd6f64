//! One request's passage through the phases: what is known of it before any phase (its
//! correlation id, normalized path and host), what the phases learn (route, caller,
//! modules, redactions), and its audit record, which is appended even if the handler is
//! dropped. [`Exchange::begin`] is the first phase and [`Exchange::finish`] the last two
//! (audit, respond) for every embedding.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use palisade_ledger::{Ledger, Record};

use super::io::ResponseDeadline;
use super::policies::Outcome;
use super::target::{self, Refused};
use crate::body::Body;
use crate::chain::Trace;
use crate::error::Error;
use crate::metrics::Metrics;

/// Redacted paths one audit block lists at most; past that it says how many more.
const MAX_RECORDED_PATHS: usize = 1_000;

/// How a request ended: the audit record's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The upstream's (or inner service's) answer was sent.
    Allowed,
    /// A request policy answered with a status below 400.
    Responded,
    /// Auth refused the caller, or a request policy answered with 400 or above.
    Denied,
    /// A limit or a malformed request refused it.
    Refused,
    /// Something failed: a policy, the upstream, redaction, the audit ledger.
    Failed,
    /// The client left before the response was ready.
    ClientClosed,
}

impl Verdict {
    /// The name the audit record carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Responded => "responded",
            Verdict::Denied => "denied",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
            Verdict::ClientClosed => "client_closed",
        }
    }
}

/// Why a request ended as it did: the audit record's `cause`.
#[derive(Debug)]
enum Cause<'a> {
    /// The error's own cause (`no_route`, `token_expired`, ...).
    Error(&'a Error),
    /// Policies with `fail = "open"` failed and were skipped.
    FailOpen(&'a [&'static str]),
    /// The client left.
    ClientClosed,
}

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Error(e) => f.write_str(e.cause()),
            Cause::FailOpen(skipped) => write!(f, "fail_open:{}", skipped.join(",")),
            Cause::ClientClosed => f.write_str("client_closed"),
        }
    }
}

/// A request's audit record until it is appended. If the handler is dropped first (the
/// client closed the connection or reset the stream while the pipeline worked), the
/// record is appended from a task of its own with the decision `client_closed` and
/// status 499, with what was known by then (route, tenant, identity).
struct Pending {
    record: Option<Record>,
    ledger: Option<Arc<Ledger>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let (Some(mut record), Some(ledger)) = (self.record.take(), self.ledger.clone()) else {
            return;
        };
        record.decision = Verdict::ClientClosed.as_str().into();
        record.cause = Some(Cause::ClientClosed.to_string());
        record.status = 499;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = ledger.append(record).await {
                    tracing::error!(error = %e, "no audit block for a request the client closed");
                }
            });
        }
    }
}

/// One request between its first phase and its last.
pub(crate) struct Exchange {
    /// The correlation id sent upstream and back to the client.
    pub(crate) cid: String,
    /// The normalized path routes are matched on, or why the path was refused.
    pub(crate) path: Result<String, Refused>,
    /// The host the request names, or `None` when its authority and `Host` disagree.
    pub(crate) host: Option<String>,
    /// What the policy chains did, for the audit record.
    pub(crate) trace: Trace,
    started: Instant,
    pub(crate) begun: tokio::time::Instant,
    pending: Pending,
    /// Set by [`Exchange::routed`].
    upstream: Option<String>,
    expose_errors: bool,
    total: Option<Duration>,
    /// The request's trace, with `[traces]`.
    pub(crate) spans: Option<Arc<crate::telemetry::Spans>>,
}

impl Exchange {
    /// Phase: admit. The correlation id (the caller's `x-correlation-id` if it is 1-64 of
    /// `[A-Za-z0-9_-]`, else a fresh one), the normalized path, the host, and the audit
    /// record, appended to `ledger` (if any) whatever happens next.
    pub(crate) fn begin<B>(req: &http::Request<B>, ledger: Option<Arc<Ledger>>) -> Self {
        let cid = correlation_id(req.headers());
        let path = target::normalize(req.uri().path());
        // The recorded path is the normalized one (`/` when refused), its query values
        // removed: a query carries data, its keys name fields.
        let routed = path.as_deref().unwrap_or("/");
        let recorded = match req.uri().query() {
            Some(q) => Record::path_without_query_values(&format!("{routed}?{q}")),
            None => routed.to_string(),
        };
        let record = Record {
            correlation_id: cid.clone(),
            method: req.method().as_str().to_string(),
            path: recorded,
            time_ms: Record::now_ms(),
            ..Record::default()
        };
        Exchange {
            cid,
            path,
            host: host(req),
            trace: Trace::default(),
            started: Instant::now(),
            begun: tokio::time::Instant::now(),
            pending: Pending {
                record: Some(record),
                ledger,
            },
            upstream: None,
            expose_errors: false,
            total: None,
            spans: None,
        }
    }

    fn record(&mut self) -> &mut Record {
        self.pending
            .record
            .as_mut()
            .expect("the record is appended once")
    }

    /// The request found its route (or layer): who owns it, where it goes, whether
    /// error bodies may name their cause, and how long the whole exchange may take.
    pub(crate) fn routed(
        &mut self,
        tenant: &str,
        route: &str,
        upstream: &str,
        expose_errors: bool,
        total: Option<Duration>,
    ) {
        let record = self.record();
        record.tenant = tenant.to_string();
        record.route = route.to_string();
        self.upstream = Some(upstream.to_string());
        self.expose_errors = expose_errors;
        self.total = total;
    }

    /// The caller authentication found (or refused).
    pub(crate) fn identify(&mut self, subject: &str) {
        self.record().identity = Some(subject.to_string());
    }

    /// The authenticated caller's subject, if any.
    pub(crate) fn identity(&self) -> Option<&str> {
        self.pending.record.as_ref()?.identity.as_deref()
    }

    /// Phases: audit and respond. The record gets the outcome; no block, no response
    /// (503 `audit_unavailable`); the client gets `x-correlation-id` and, for a routed
    /// request, the route's total deadline for sending the response.
    pub(crate) async fn finish(
        mut self,
        result: Result<Outcome, Error>,
        metrics: Option<&Metrics>,
    ) -> http::Response<Body> {
        let cid = self.cid.clone();
        let upstream = self.upstream.take();
        let expose = self.expose_errors;
        let trace = std::mem::take(&mut self.trace);
        let spans = self.spans.take();
        let elapsed = self.started.elapsed();
        let record = self.record();
        let mut response = match result {
            Ok(outcome) => {
                record.decision = outcome.verdict.as_str().into();
                if outcome.verdict == Verdict::Allowed {
                    record.upstream = upstream;
                }
                outcome.response
            }
            Err(e) => {
                if let Error::Forbidden { subject, .. } = &e {
                    record.identity = Some(subject.clone());
                }
                record.cause = Some(Cause::Error(&e).to_string());
                record.decision = e.decision().as_str().into();
                if e.reached_upstream() {
                    record.upstream = upstream;
                }
                if let Some(m) = metrics
                    && e.is_limit()
                {
                    m.limit(&record.tenant, &record.route, e.cause());
                }
                e.to_response(&cid, expose)
            }
        };
        if record.cause.is_none() && !trace.skipped.is_empty() {
            record.cause = Some(Cause::FailOpen(&trace.skipped).to_string());
        }
        record.status = response.status().as_u16();
        record.modules = trace.modules;
        record.redacted = recorded_paths(&trace.redacted);
        if let (Some(m), Some(label)) = (
            metrics,
            trace.detail.get("classification").and_then(|l| l.as_str()),
        ) {
            m.classified(&record.tenant, &record.route, label);
        }
        if !trace.detail.is_empty() {
            record.detail = Some(serde_json::Value::Object(trace.detail));
        }
        record.latency_us = elapsed.as_micros() as u64;
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
        if let Some(spans) = spans {
            use opentelemetry::KeyValue;
            let attributes = vec![
                KeyValue::new("palisade.correlation_id", cid.clone()),
                KeyValue::new("palisade.tenant", record.tenant.clone()),
                KeyValue::new("palisade.route", record.route.clone()),
                KeyValue::new("palisade.decision", record.decision.clone()),
                KeyValue::new("http.request.method", record.method.clone()),
            ];
            spans.finish(attributes, record.status, record.cause.as_deref());
        }
        let (tenant, route) = (record.tenant.clone(), record.route.clone());

        // Phase: audit. From here the block is the ledger's: the append runs as a task of
        // its own, so a client that leaves while it waits (a full writer queue) cannot
        // cancel it.
        let record = self
            .pending
            .record
            .take()
            .expect("the record is appended once");
        if let Some(ledger) = self.pending.ledger.clone() {
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
        }
        if let Some(m) = metrics {
            m.request(&tenant, &route, response.status().as_u16(), elapsed);
        }

        // Phase: respond. The route's total deadline covers sending the response too.
        if let Ok(v) = HeaderValue::from_str(&cid) {
            response.headers_mut().insert("x-correlation-id", v);
        }
        if let Some(total) = self.total
            && response.extensions().get::<ResponseDeadline>().is_none()
        {
            response
                .extensions_mut()
                .insert(ResponseDeadline(self.begun + total));
        }
        response
    }
}

/// Redacted paths as a block records them: keys are data too, so a path names fields,
/// never an email or SSN key; at most [`MAX_RECORDED_PATHS`], however many values one
/// body had (a million NDJSON lines).
fn recorded_paths(redacted: &[String]) -> Vec<String> {
    let mut paths: Vec<String> = redacted
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
    if redacted.len() > MAX_RECORDED_PATHS {
        paths.push(format!("(+{} more)", redacted.len() - MAX_RECORDED_PATHS));
    }
    paths
}

/// The host a request names: the URI's authority (HTTP/2 `:authority`, HTTP/1.1
/// absolute form) or else `Host`. When both are sent they must agree (`None` otherwise),
/// or the upstream could be told of another host than the one the request was routed
/// and authorized for.
fn host<B>(req: &http::Request<B>) -> Option<String> {
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let host_header = req
        .headers()
        .get(http::header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"));
    match (authority, host_header) {
        (Some(a), Some(h)) if !without_port(&a).eq_ignore_ascii_case(without_port(h)) => None,
        (Some(a), _) => Some(a),
        (None, h) => Some(h.unwrap_or_default().to_string()),
    }
}

/// `host[:port]` without its port (`[::1]:80` gives `[::1]`).
fn without_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

/// The caller's correlation id when it is safe to echo, else a fresh one.
fn correlation_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(new_id, str::to_string)
}

/// A fresh correlation id: 128 bits, hex, unique within the process and unpredictable
/// outside it: two SipHash-1-3 values (std's `RandomState`, keyed once per process from
/// the OS's random source) of a counter. No system call per request, and no sequence
/// that would tell a client how many requests others sent.
pub fn new_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(std::hash::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        key.hash_one((n, 0u8)),
        key.hash_one((n, 1u8))
    )
}

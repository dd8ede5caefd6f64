//! OpenTelemetry traces (`[traces]`) into a small OTLP/HTTP collector on loopback: one
//! request's server span with its phases, its policy invocations (fuel, memory,
//! outcome; never values) and the upstream call, the correlation id as an attribute,
//! and W3C `traceparent` honoured from trusted callers only and sent upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::support::{Config, Harness, Route, send, start_with};

type Collected = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP (protobuf) traces receiver: every span it was sent.
async fn collector() -> (std::net::SocketAddr, Collected) {
    let spans: Collected = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(|State(spans): State<Collected>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut all = spans.lock().unwrap();
                for rs in request.resource_spans {
                    let service = rs.resource.as_ref().and_then(|r| {
                        r.attributes
                            .iter()
                            .find(|a| a.key == "service.name")
                            .cloned()
                    });
                    assert!(service.is_some(), "service.name missing");
                    for ss in rs.scope_spans {
                        all.extend(ss.spans);
                    }
                }
                // What a collector answers: an empty ExportTraceServiceResponse.
                Vec::<u8>::new()
            }),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans)
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(AnyValue::StringValue(s)) => s,
                Some(AnyValue::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The spans of the trace `trace_id` once its server span arrived.
async fn trace_of(spans: &Collected, trace_id: &[u8]) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if found.iter().any(|s| s.name == "palisade.request") {
            // The children were ended before the server span: all in the same batch or
            // an earlier one.
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no trace {}",
            hex::encode(trace_id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway whose `[server] trusted_proxies` is `proxies`.
async fn gateway(collector: std::net::SocketAddr, trust: &str, proxies: &str) -> Harness {
    let traces = format!(
        "endpoint = \"http://{collector}/v1/traces\"\ntrust_traceparent = \"{trust}\"\n\
         service_name = \"palisade-test\""
    );
    start_with(move |up, _| {
        Config::new(up)
            .server(&format!("trusted_proxies = [\"{proxies}\"]"))
            .section("traces", &traces)
            .route(Route::new("orders").path("/orders").response("@REDACT_PII"))
    })
    .await
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_shows_the_phases_the_policies_and_the_upstream_of_one_request() {
    let (addr, spans) = collector().await;
    let h = gateway(addr, "proxies", "127.0.0.0/8").await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = send(
        h.addr(),
        "GET",
        "/orders?email=alice@example.com",
        &[
            ("traceparent", traceparent.as_str()),
            ("tracestate", "vendor=secret"),
        ],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cid = r.header("x-correlation-id").unwrap();

    let trace = trace_of(&spans, &hex::decode(CALLER_TRACE).unwrap()).await;
    let by_name = |name: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}: {:?}", names(&trace)))
    };
    // The server span joins the trusted caller's trace, under its span.
    let root = by_name("palisade.request");
    assert_eq!(hex::encode(&root.parent_span_id), CALLER_SPAN);
    let a = attributes(root);
    assert_eq!(a["palisade.correlation_id"], cid);
    assert_eq!(a["palisade.tenant"], "acme");
    assert_eq!(a["palisade.route"], "orders");
    assert_eq!(a["http.response.status_code"], "200");
    // Every phase and the policy are its children.
    for phase in [
        "route",
        "admit",
        "auth",
        "bind_tenant",
        "read_body",
        "request_policies",
        "upstream",
        "response_policies",
        "policy redact-pii",
    ] {
        assert_eq!(by_name(phase).parent_span_id, root.span_id, "{phase}");
    }
    let policy = attributes(by_name("policy redact-pii"));
    assert_eq!(policy["palisade.phase"], "response");
    assert_eq!(policy["palisade.outcome"], "continue");
    assert!(
        policy["palisade.fuel"].parse::<u64>().unwrap() > 0,
        "{policy:?}"
    );
    assert!(policy["palisade.memory_peak_bytes"].parse::<u64>().unwrap() > 0);
    // The upstream got the upstream span's context.
    let upstream = by_name("upstream");
    let sent = r.json()["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r.text()))
        .to_string();
    assert_eq!(
        sent,
        format!("00-{CALLER_TRACE}-{}-01", hex::encode(&upstream.span_id))
    );
    // A trusted caller's vendor state travels with its trace.
    assert_eq!(r.json()["headers"]["tracestate"], "vendor=secret");
    // Names, numbers and outcomes only: the query's value is nowhere.
    for span in &trace {
        for value in attributes(span).values() {
            assert!(!value.contains("alice"), "{}: {value}", span.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_callers_traceparent_starts_a_new_trace() {
    let (addr, spans) = collector().await;
    // The caller (127.0.0.1) is not one of the trusted proxies.
    let h = gateway(addr, "proxies", "10.0.0.0/8").await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    let r = send(
        h.addr(),
        "GET",
        "/orders",
        &[
            ("traceparent", traceparent.as_str()),
            ("tracestate", "forged=1"),
        ],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    // The caller asked for no sampling, an existing trace and its vendor state; it gets
    // none of them.
    let sent = r.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let trace_id = sent.split('-').nth(1).unwrap().to_string();
    assert_ne!(trace_id, CALLER_TRACE);
    assert!(sent.ends_with("-01"), "{sent}");
    assert!(r.json()["headers"].get("tracestate").is_none());
    let trace = trace_of(&spans, &hex::decode(&trace_id).unwrap()).await;
    let root = trace.iter().find(|s| s.name == "palisade.request").unwrap();
    assert!(root.parent_span_id.is_empty());
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

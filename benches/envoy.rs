//! What serving Envoy costs per exchange (issue 25), beside the gateway's own pipeline in
//! one run. Every row is one request, one after another, with one upstream call on
//! loopback and its audit block (`async` durability):
//!
//! - `gateway`: an HTTP/1.1 client (pooled) -> `palisade serve`'s listener -> the
//!   upstream: the baseline;
//! - `ext_proc`: what Envoy does with the ext_proc filter: a gRPC stream to Palisade
//!   (`request_headers`, then the upstream call made by the "Envoy" itself, then
//!   `response_headers` and, when Palisade asks for it, `response_body`), on one HTTP/2
//!   connection, from a tonic client built from the same Envoy protos;
//! - `ext_authz`: one `Check`, then the upstream call.
//!
//! Two routes: `headers` (no policies: Envoy sends headers only) and `redaction` (a
//! JSONPath rule on the response: Envoy sends the response body, buffered).
//!
//! `cargo bench --bench envoy`

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, ProcessingRequest, processing_request, processing_response,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_gateway::{Gateway, Running};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const DOC: &[u8] = br#"{"id":7,"name":"Ada","ssn":"123-45-6789","items":[1,2,3]}"#;

/// A loopback HTTP server answering every request with [`DOC`].
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut res = hyper::Response::new(Full::new(Bytes::from_static(DOC)));
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, hyper::Error>(res)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn gateway(dir: &std::path::Path, upstream: SocketAddr) -> Running {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
[audit]
sqlite = "audit.db"
durability = "async"
[envoy]
listen = "127.0.0.1:0"
message_timeout_ms = 5000
[[tenant]]
name = "acme"
[[upstream]]
name = "up"
url = "http://{upstream}"
[[route]]
name = "headers"
tenant = "acme"
upstream = "up"
path = "/headers"
[[route]]
name = "redaction"
tenant = "acme"
upstream = "up"
path = "/redaction"
[[route.redact]]
path = "$..ssn"
"#
    );
    let path = dir.join("palisade.toml");
    std::fs::write(&path, text).unwrap();
    Gateway::from_file(&path).unwrap().start().await.unwrap()
}

fn pairs(list: &[(&str, &str)]) -> HeaderMap {
    HeaderMap {
        headers: list
            .iter()
            .map(|(k, v)| HeaderValue {
                key: (*k).into(),
                raw_value: v.as_bytes().to_vec(),
                ..HeaderValue::default()
            })
            .collect(),
    }
}

type Http = Client<HttpConnector, Empty<Bytes>>;

/// One request through the gateway's own listener.
async fn via_gateway(client: &Http, gateway: SocketAddr, path: &str) {
    let res = client
        .get(format!("http://{gateway}{path}").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.into_body().collect().await.unwrap();
}

/// One request as Envoy's ext_proc filter carries it.
async fn via_ext_proc(
    grpc: &mut ExternalProcessorClient<Channel>,
    client: &Http,
    upstream: SocketAddr,
    path: &str,
) {
    use processing_request::Request as Msg;
    use processing_response::Response as Answer;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let message = |m| ProcessingRequest {
        request: Some(m),
        ..ProcessingRequest::default()
    };
    tx.send(message(Msg::RequestHeaders(HttpHeaders {
        headers: Some(pairs(&[
            (":method", "GET"),
            (":path", path),
            (":authority", "bench.test"),
            (":scheme", "http"),
        ])),
        end_of_stream: true,
        ..HttpHeaders::default()
    })))
    .await
    .unwrap();
    let mut answers = grpc
        .process(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    let buffered = first
        .mode_override
        .as_ref()
        .is_some_and(|m| m.response_body_mode == 2);
    assert!(matches!(first.response, Some(Answer::RequestHeaders(_))));
    let res = client
        .get(format!("http://{upstream}{path}").parse().unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    tx.send(message(Msg::ResponseHeaders(HttpHeaders {
        headers: Some(pairs(&[
            (":status", "200"),
            ("content-type", "application/json"),
        ])),
        end_of_stream: false,
        ..HttpHeaders::default()
    })))
    .await
    .unwrap();
    let _ = answers.message().await.unwrap().unwrap();
    if buffered {
        tx.send(message(Msg::ResponseBody(HttpBody {
            body: body.to_vec(),
            end_of_stream: true,
            ..HttpBody::default()
        })))
        .await
        .unwrap();
        let last = answers.message().await.unwrap().unwrap();
        assert!(matches!(last.response, Some(Answer::ResponseBody(_))));
    }
}

/// One request as Envoy's ext_authz filter carries it.
async fn via_ext_authz(
    grpc: &mut AuthorizationClient<Channel>,
    client: &Http,
    upstream: SocketAddr,
    path: &str,
) {
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    host: "bench.test".into(),
                    scheme: "http".into(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    };
    let r = grpc.check(check).await.unwrap().into_inner();
    assert_eq!(r.status.unwrap_or_default().code, 0);
    let res = client
        .get(format!("http://{upstream}{path}").parse().unwrap())
        .await
        .unwrap();
    let _ = res.into_body().collect().await.unwrap();
}

fn envoy(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(serve());
    let dir = tempfile::tempdir().unwrap();
    let running = rt.block_on(gateway(dir.path(), upstream));
    let proxy = running.proxy_addr();
    let grpc_addr = running.envoy_addr().unwrap();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let channel = rt.block_on(async {
        Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    });
    let mut ext_proc = ExternalProcessorClient::new(channel.clone());
    let mut ext_authz = AuthorizationClient::new(channel);
    for route in ["headers", "redaction"] {
        let path = format!("/{route}/1");
        let mut g = c.benchmark_group(format!("envoy/{route}"));
        g.bench_function("gateway", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        via_gateway(&http, proxy, &path).await;
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function("ext_proc", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        via_ext_proc(&mut ext_proc, &http, upstream, &path).await;
                    }
                    start.elapsed()
                })
            })
        });
        if route == "headers" {
            g.bench_function("ext_authz", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            via_ext_authz(&mut ext_authz, &http, upstream, &path).await;
                        }
                        start.elapsed()
                    })
                })
            });
        }
        g.finish();
    }
    rt.block_on(running.shutdown());
}

criterion_group!(benches, envoy);
criterion_main!(benches);

//! A route's total deadline holds whatever the client does: an HTTP/2 client that never
//! opens its flow-control window and an HTTP/1.1 client that never reads get their
//! stream reset (connection closed) and the upstream connection and in-flight slot are
//! released shortly after the deadline; another request to the same upstream succeeds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::{Config, Harness, Route, get, start_with};

/// An upstream whose `/stream` never ends (64 KiB chunks as fast as they are taken)
/// and whose `/big` is a 8 MiB JSON document (more than loopback socket buffers
/// hold); it counts the connections that ended.
struct Streaming {
    addr: SocketAddr,
    closed: Arc<AtomicUsize>,
}

/// An endless body.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 65536] = [b'x'; 65536];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

async fn streaming_upstream() -> Streaming {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = match req.uri().path() {
                        "/stream" => Endless.boxed(),
                        "/big" => {
                            let doc = serde_json::json!({ "ssn": "123-45-6789", "pad": "x".repeat(8 << 20) });
                            http_body_util::Full::new(Bytes::from(doc.to_string()))
                                .map_err(|never| match never {})
                                .boxed()
                        }
                        _ => http_body_util::Full::new(Bytes::from_static(b"{\"ok\":true}"))
                            .map_err(|never| match never {})
                            .boxed(),
                    };
                    let mut res = hyper::Response::new(body);
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(res)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Streaming { addr, closed }
}

const TOTAL_MS: u64 = 1500;

/// A gateway whose `/` route streams from `up` (through an upstream that takes one
/// request at a time) and whose `/redacted` route reads and redacts.
async fn gateway(up: &Streaming) -> Harness {
    let up = up.addr;
    start_with(move |_, _| {
        let url = format!("http://{up}");
        let deadlines = format!("timeout_ms = 1000\ntotal_timeout_ms = {TOTAL_MS}");
        Config::new(up)
            .upstream("streaming", &url, "max_in_flight = 1")
            .upstream("buffered", &url, "")
            .route(
                Route::new("streamed")
                    .upstream("streaming")
                    .keys(&deadlines),
            )
            .route(
                Route::new("redacted")
                    .upstream("buffered")
                    .path("/redacted")
                    .keys("strip_prefix = true")
                    .keys(&deadlines)
                    .keys("max_response_bytes = 16777216\nredact = [{ path = \"$.ssn\" }]"),
            )
    })
    .await
}

/// Waits up to `bound` for the upstream to see `n` connections end.
async fn upstream_closed(up: &Streaming, n: usize, bound: Duration) -> bool {
    let until = Instant::now() + bound;
    while up.closed.load(Ordering::SeqCst) < n {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// After the deadline: the slot is free (the upstream takes one request at a time, so
/// a held slot would be a 503 `upstream_saturated`).
async fn the_upstream_serves_again(h: &Harness) {
    let r = get(h.addr(), "/ok").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_with_a_closed_window_is_cut_at_the_total_deadline() {
    let up = streaming_upstream().await;
    let h = gateway(&up).await;
    let tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let started = Instant::now();
    let req = http::Request::builder()
        .uri(format!("http://{}/stream", h.addr()))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 200);
    // The body is never read and the window never opened.
    let _body = res.into_body();

    let bound = Duration::from_millis(TOTAL_MS) + Duration::from_secs(5);
    assert!(
        upstream_closed(&up, 1, bound).await,
        "the upstream connection was still open {:?} after the request",
        started.elapsed()
    );
    the_upstream_serves_again(&h).await;
    // The client's connection is closed too (its stream with it).
    let ended = tokio::time::timeout(bound, conn).await;
    assert!(ended.is_ok(), "the HTTP/2 connection outlived the deadline");
    assert!(started.elapsed() >= Duration::from_millis(TOTAL_MS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_never_reads_is_cut_at_the_total_deadline() {
    let up = streaming_upstream().await;
    let h = gateway(&up).await;
    let mut tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let bound = Duration::from_millis(TOTAL_MS) + Duration::from_secs(5);
    assert!(
        upstream_closed(&up, 1, bound).await,
        "the upstream connection was still open {:?} after the request",
        started.elapsed()
    );
    the_upstream_serves_again(&h).await;
    // Reading now finds the connection closed after what was buffered.
    let (_, closed) = crate::support::read_until_close(&mut tcp, bound).await;
    assert!(closed, "the client connection outlived the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_and_redacted_response_to_a_client_that_never_reads_is_cut_too() {
    let up = streaming_upstream().await;
    let h = gateway(&up).await;
    // HTTP/1.1: 8 MiB of redacted JSON, never read.
    let mut tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET /redacted/big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // HTTP/2 with a closed window.
    let h2_tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(h2_tcp)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::builder()
        .uri(format!("http://{}/redacted/big", h.addr()))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let started = Instant::now();
    // Kept (never read): dropping it would reset the stream from the client's side.
    let res = res.await.unwrap();
    assert_eq!(res.status(), 200);

    let bound = Duration::from_millis(TOTAL_MS) + Duration::from_secs(5);
    // Not a byte read until well after the deadline (and the grace after it).
    tokio::time::sleep(Duration::from_millis(TOTAL_MS) + Duration::from_secs(3)).await;
    let (_, closed) = crate::support::read_until_close(&mut tcp, bound).await;
    assert!(
        closed,
        "the HTTP/1.1 client outlived the deadline: {:?}",
        h.blocks()
    );
    assert!(
        tokio::time::timeout(bound, conn).await.is_ok(),
        "the HTTP/2 client outlived the deadline"
    );
    assert!(started.elapsed() < Duration::from_millis(TOTAL_MS) + bound);
    the_upstream_serves_again(&h).await;
}

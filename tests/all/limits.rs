//! Connection and request limits over real sockets: catalogue items 31-34.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{get, raw, read_until_close, send, start};

const SERVER: &str = r#"
header_timeout_ms = 300
body_timeout_ms = 300
max_header_bytes = 16384
max_headers = 100
"#;

const ROUTES: &str = r#"
[[route]]
name = "small"
tenant = "acme"
upstream = "up"
path = "/"
max_body_bytes = 1024
concurrency = 2

[[route]]
name = "other-tenant"
tenant = "globex"
upstream = "up"
path = "/globex"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item31_huge_or_too_many_headers_get_431_and_a_block() {
    let h = start(SERVER, ROUTES).await;
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (reply, _) = raw(h.addr(), big.as_bytes(), Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.80}");

    let mut many = String::from("GET / HTTP/1.1\r\nhost: x\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (reply, _) = raw(h.addr(), many.as_bytes(), Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.80}");
    assert_eq!(h.upstream.hits(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused: Vec<_> = h
        .blocks()
        .into_iter()
        .filter(|b| b["cause"] == "header_too_large")
        .collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["status"], 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item31_slow_headers_and_trickled_bodies_are_cut_off_at_the_timeout() {
    let h = start(SERVER, ROUTES).await;
    // A head that never ends.
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(closed, "the connection is closed after the header timeout");

    // A body that trickles: 10 of 100 bytes, then silence.
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let (reply, closed) = read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(closed);
    assert_eq!(h.upstream.hits(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let causes: Vec<String> = h
        .blocks()
        .iter()
        .filter_map(|b| b["cause"].as_str().map(String::from))
        .collect();
    assert!(causes.contains(&"header_timeout".to_string()), "{causes:?}");
    assert!(causes.contains(&"body_timeout".to_string()), "{causes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item32_oversized_bodies_get_413_without_being_buffered() {
    let h = start(SERVER, ROUTES).await;
    // Declared too large: refused before a byte of the body is sent.
    let (reply, _) = raw(
        h.addr(),
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 104857600\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("connection: close"));

    // Chunked with no length: refused once the limit is passed, mid-stream.
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        tcp.write_all(format!("200\r\n{}\r\n", "x".repeat(512)).as_bytes())
            .await
            .unwrap();
    }
    let (reply, _) = read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");

    // A length that lies low: the upstream gets exactly the declared bytes and the
    // rest is refused as a malformed next request, never forwarded.
    let (reply, _) = raw(
        h.addr(),
        format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n{}",
            "y".repeat(5000)
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:.200}");
    assert!(reply.contains("\"len\":5"), "{reply}");
    assert!(
        reply.contains("HTTP/1.1 400") || !reply.contains("yyyyyy"),
        "{reply}"
    );
    assert_eq!(h.upstream.hits(), 1);

    let r = send(h.addr(), "POST", "/", &[], vec![b'z'; 1025]).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "body_too_large");
    assert_eq!(h.block_for(&r)["cause"], "body_too_large");
    assert_eq!(h.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item33_http2_rapid_reset_closes_the_connection() {
    let h = start(SERVER, ROUTES).await;
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    let mut failed = false;
    for _ in 0..10_000 {
        let req = http::Request::builder()
            .uri(format!("http://{}/slow/5000", h.addr()))
            .body(())
            .unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(5), client.clone().ready()).await;
        let Ok(Ok(mut ready)) = ready else {
            failed = true;
            break;
        };
        match ready.send_request(req, true) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
        client = ready;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        failed || matches!(ended, Ok(Ok(Err(_)))),
        "the server kept a rapid-reset connection open"
    );
    assert!(sent < 10_000, "connection closed after {sent} resets");
    // Other clients are still served.
    assert_eq!(get(h.addr(), "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item34_route_concurrency_gets_fast_503_and_other_tenants_are_unaffected() {
    let h = start(SERVER, ROUTES).await;
    let addr = h.addr();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move { send(addr, "GET", "/slow/1500", &[], Bytes::new()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let other = get(addr, "/globex/ok").await;
    assert_eq!(other.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "another tenant's route did not wait"
    );
    let mut statuses = Vec::new();
    for t in slow {
        let r = t.await.unwrap();
        if r.status == 503 {
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
            assert_eq!(r.json()["error"], "route_overloaded");
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503, 503]);
}

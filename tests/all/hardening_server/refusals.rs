//! Requests the HTTP parsers refuse (catalogue item 58, the parser half): each gets
//! exactly one audit block with its cause, over HTTP/1.1 and HTTP/2, and none of the
//! request's bytes reach the ledger or the log.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{connect, count, gateway, settled_count};
use crate::support::{Harness, raw};

/// A value in every refused request; it must appear nowhere.
const MARKER: &str = "m4rk3r-9d1e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_the_parser_refuses_get_one_block_each() {
    let h = gateway("max_header_bytes = 8192\n").await;
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "GET /{MARKER} HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"
            ),
            "two content-lengths",
        ),
        (format!("GET /{MARKER}\r\nhost: x\r\n\r\n"), "no version"),
        (
            format!("G@T /{MARKER} HTTP/1.1\r\nhost: x\r\n\r\n"),
            "bad method",
        ),
        (
            format!("GET /{MARKER} HTTP/1.1\r\nhost: x\r\nx-a: {MARKER}\x01\r\n\r\n"),
            "control byte",
        ),
        (
            format!("GET /{MARKER} HTTP/1.1\r\nhost: x\r\nx(a): {MARKER}\r\n\r\n"),
            "bad name",
        ),
        (
            format!("GET / HTTP/1.1\r\nhost: x\r\ncontent-length: {MARKER}\r\n\r\n"),
            "bad length",
        ),
        (
            format!("GET / HTTP/1.1\r\nhost: x\r\nx-a: b\r\n {MARKER}\r\n\r\n"),
            "obs-fold",
        ),
        (
            format!("GET http://[::1/{MARKER} HTTP/1.1\r\nhost: x\r\n\r\n"),
            "bad uri",
        ),
        (format!("{MARKER}\r\n\r\n"), "not http"),
    ];
    for (n, (bytes, name)) in cases.iter().enumerate() {
        let (reply, _) = raw(h.addr(), bytes.as_bytes(), Duration::from_secs(5)).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{name}: {reply:.60}");
        assert_eq!(
            settled_count(&h, "bad_request", n + 1).await,
            n + 1,
            "{name}"
        );
    }
    // Too large: 431, its own cause.
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (reply, _) = raw(h.addr(), big.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.60}");
    assert_eq!(settled_count(&h, "header_too_large", 1).await, 1);
    assert_eq!(count(&h, "bad_request"), cases.len());
    let refused: Vec<_> = h
        .blocks()
        .into_iter()
        .filter(|b| b["decision"] == "refused")
        .collect();
    assert!(
        refused
            .iter()
            .all(|b| b["status"] == 400 || b["status"] == 431)
    );
    nothing_of_the_requests_is_kept(&h);
}

/// HPACK, literal fields without indexing (RFC 7541 §6.2.2): nothing is remembered.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, mut n: usize) {
        if n < 127 {
            out.push(n as u8);
            return;
        }
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
    }
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        int(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        int(&mut out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends the preface, empty settings and `frames` on a new connection, then reads the
/// server's frames until stream 1 ends (reset, end of stream, `GOAWAY`, close).
/// Returns the frame types seen on stream 1 and the connection.
async fn h2_exchange(addr: SocketAddr, frames: &[Vec<u8>]) -> Vec<(u8, u8)> {
    let mut tcp = connect(addr).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    tcp.write_all(&out).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut head = [0u8; 9];
    loop {
        if tokio::time::timeout_at(deadline, tcp.read_exact(&mut head))
            .await
            .map_or(true, |r| r.is_err())
        {
            return seen;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if tcp.read_exact(&mut payload).await.is_err() {
            return seen;
        }
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if kind == 0x4 && flags & 1 == 0 {
            tcp.write_all(&frame(0x4, 1, 0, &[])).await.unwrap();
        }
        if stream == 1 {
            seen.push((kind, flags));
            if kind == 0x3 || flags & 1 != 0 {
                return seen;
            }
        }
        if kind == 0x7 {
            seen.push((kind, flags));
            return seen;
        }
    }
}

fn request(extra: &[(&str, &str)], end: bool) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "x"),
        (":path", "/echo"),
    ];
    fields.extend_from_slice(extra);
    frame(0x1, 0x4 | u8::from(end), 1, &hpack(&fields))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_the_library_refuses_get_one_block_each() {
    let h = gateway("max_header_bytes = 8192\n").await;
    let marker = MARKER;
    let data = frame(0x0, 0x1, 1, marker.as_bytes());
    let missing_path = frame(
        0x1,
        0x5,
        1,
        &hpack(&[(":method", "GET"), (":scheme", "http"), (":authority", "x")]),
    );
    let big = "a".repeat(9000);
    // (frames, expected cause)
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![request(&[("x-Upper", marker)], true)], "bad_request"),
        (
            vec![request(&[("connection", marker)], true)],
            "bad_request",
        ),
        (vec![missing_path], "bad_request"),
        (vec![request(&[("te", marker)], true)], "bad_request"),
        // Refused at the headers, with a body behind them.
        (
            vec![
                request(&[("content-length", "1"), ("content-length", "2")], false),
                data.clone(),
            ],
            "bad_request",
        ),
        (vec![request(&[("x-big", &big)], true)], "header_too_large"),
    ];
    let mut expected = std::collections::HashMap::<&str, usize>::new();
    for (frames, cause) in &cases {
        let seen = h2_exchange(h.addr(), frames).await;
        assert!(!seen.is_empty(), "no answer to a {cause} case");
        *expected.entry(cause).or_default() += 1;
        for (c, n) in &expected {
            assert_eq!(settled_count(&h, c, *n).await, *n, "{c} after {seen:?}");
        }
    }
    // A body that breaks its declared length after valid headers: the request reached
    // the pipeline, which audits it; still exactly one block.
    let before = h.blocks().len();
    h2_exchange(
        h.addr(),
        &[request(&[("content-length", "3")], false), data],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.blocks().len(), before + 1, "{:?}", h.blocks().last());
    // A valid stream is served.
    let seen = h2_exchange(
        h.addr(),
        &[frame(
            0x1,
            0x5,
            1,
            &hpack(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "x"),
                (":path", "/ok"),
            ]),
        )],
    )
    .await;
    assert_eq!(seen.first().map(|s| s.0), Some(0x1), "{seen:?}");
    nothing_of_the_requests_is_kept(&h);
}

fn nothing_of_the_requests_is_kept(h: &Harness) {
    let ledger = std::fs::read(h.ledger_path()).unwrap();
    let wal = std::fs::read(h.ledger_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&ledger, &wal] {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "a request value reached the ledger"
        );
    }
    assert!(
        !crate::support::log_text().contains(MARKER),
        "a request value reached the log"
    );
}

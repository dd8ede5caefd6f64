//! Connections that would pin the gateway, over real sockets (catalogue items 56 and
//! 58): silent and half-preface connections, idle keep-alive and HTTP/2 connections,
//! the connection caps, the descriptor limit; [`deadlines`]: clients that stop reading;
//! [`refusals`]: requests the HTTP parsers refuse.

mod deadlines;
mod refusals;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::cli::serve_with;
use crate::support::{Harness, get, send, start};

const ROUTES: &str = r#"
[[route]]
name = "all"
tenant = "acme"
upstream = "up"
"#;

/// Opens `n` connections from `from` and writes `bytes` on each.
async fn open_many(addr: SocketAddr, from: IpAddr, n: usize, bytes: &[u8]) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
        if !bytes.is_empty() {
            tcp.write_all(bytes).await.unwrap();
        }
        out.push(tcp);
    }
    out
}

/// For each connection, whether the server closed it by `deadline` (a read returns
/// end of stream or an error; nothing is ever sent to these clients).
async fn closed_by(conns: Vec<TcpStream>, deadline: tokio::time::Instant) -> Vec<bool> {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut tcp| {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
                        Err(_) => return false,
                        Ok(Ok(0) | Err(_)) => return true,
                        Ok(Ok(_)) => {}
                    }
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(h: &Harness, cause: &str) -> usize {
    h.blocks().iter().filter(|b| b["cause"] == cause).count()
}

/// Waits (up to 10 s) until `count(h, cause)` is at least `n`, then a little more, and
/// returns the final count.
async fn settled_count(h: &Harness, cause: &str, n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(10);
    while count(h, cause) < n && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    count(h, cause)
}

async fn metric(h: &Harness, name_and_labels: &str) -> f64 {
    let text = get(h.running.admin_addr().unwrap(), "/metrics")
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A normal request answers within a second (a generous bound for loopback).
async fn answers_quickly(addr: SocketAddr) {
    let started = Instant::now();
    let r = get(addr, "/ok").await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a normal request took {:?}",
        started.elapsed()
    );
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item56_silent_and_half_preface_connections_are_closed_at_the_head_deadline() {
    // Caps high enough that only the deadline closes them.
    let h = start(
        "header_timeout_ms = 500\n[server.connections]\nmax_per_listener = 5000\nmax_per_peer = 5000\nadmin_max_per_peer = 500\n",
        ROUTES,
    )
    .await;
    let opened = Instant::now();
    let silent = open_many(h.addr(), LOCAL, 1000, b"").await;
    let half = open_many(h.addr(), LOCAL, 1000, b"PRI * HTTP/2.0\r\n").await;
    let admin = open_many(h.running.admin_addr().unwrap(), LOCAL, 200, b"").await;
    answers_quickly(h.addr()).await;
    let r = get(h.running.admin_addr().unwrap(), "/healthz").await;
    assert_eq!(r.status, 200, "the admin listener still answers");

    // 500 ms configured; checked with a generous bound.
    let deadline = tokio::time::Instant::from_std(opened) + Duration::from_secs(10);
    for (name, conns) in [("silent", silent), ("half preface", half), ("admin", admin)] {
        let closed = closed_by(conns, deadline).await;
        let open = closed.iter().filter(|c| !**c).count();
        assert_eq!(open, 0, "{open} {name} connections still open");
    }
    // A started head is a refused request; a silent connection is not one.
    assert_eq!(settled_count(&h, "header_timeout", 1000).await, 1000);
    assert!(
        metric(
            &h,
            "palisade_connections_closed_total{listener=\"proxy\",reason=\"silent\"}"
        )
        .await
            >= 1000.0
    );
    answers_quickly(h.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item56_a_silent_tls_client_is_closed_at_the_head_deadline() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let server = format!(
        "header_timeout_ms = 500\ntls = {{ cert = \"{0}/cert.pem\", key = \"{0}/key.pem\" }}\n[server.connections]\nmax_per_peer = 5000\n",
        dir.path().display()
    );
    let h = start(&server, ROUTES).await;
    let opened = Instant::now();
    let silent = open_many(h.addr(), LOCAL, 300, b"").await;
    // Half a ClientHello: a TLS record header promising more than is sent.
    let half = open_many(h.addr(), LOCAL, 300, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    let deadline = tokio::time::Instant::from_std(opened) + Duration::from_secs(10);
    for conns in [silent, half] {
        assert!(closed_by(conns, deadline).await.iter().all(|c| *c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item56_idle_keep_alive_and_http2_connections_are_closed() {
    let h = start(
        "header_timeout_ms = 500\n[server.connections]\nidle_timeout_ms = 3000\n",
        ROUTES,
    )
    .await;
    // HTTP/1.1 keep-alive: a request, then silence.
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    let (_, closed) = crate::support::read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(closed);
    assert!(
        idle_from.elapsed() >= Duration::from_millis(2900),
        "closed before the idle timeout: {:?}",
        idle_from.elapsed()
    );

    // HTTP/1.1: a second head that never ends is cut at the head deadline, audited.
    let before = count(&h, "header_timeout");
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tcp.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = crate::support::read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "cut at the head deadline, not the idle timeout"
    );
    assert_eq!(
        settled_count(&h, "header_timeout", before + 1).await,
        before + 1
    );

    // HTTP/2: a request, then silence: GOAWAY and close.
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::builder()
        .uri(format!("http://{}/ok", h.addr()))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    assert_eq!(res.await.unwrap().status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was not closed");
    // A connection that only sent the preface and its settings is not a request.
    let idle_h2 = open_many(
        h.addr(),
        LOCAL,
        20,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    assert!(closed_by(idle_h2, deadline).await.iter().all(|c| *c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item56_connection_caps_shed_the_longest_idle_and_refuse_when_all_are_busy() {
    // Long head deadline: here only the caps close connections.
    let h = start(
        "header_timeout_ms = 20000\n[server.connections]\nmax_per_listener = 60\nmax_per_peer = 40\n",
        ROUTES,
    )
    .await;
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let first = open_many(h.addr(), LOCAL, 100, b"").await;
    // Per peer: the 60 oldest of 127.0.0.1 made room for the newer ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let soon = || tokio::time::Instant::now() + Duration::from_millis(300);
    let (old, new) = {
        let mut first = first;
        let new = first.split_off(60);
        (first, new)
    };
    assert!(
        closed_by(old, soon()).await.iter().all(|c| *c),
        "the oldest were shed"
    );
    // In all: 40 of 127.0.0.1 + 30 of 127.0.0.2 > 60: ten more of the oldest go.
    let second = open_many(h.addr(), other, 30, b"").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = closed_by(new, soon()).await;
    assert_eq!(closed.iter().filter(|c| **c).count(), 10, "{closed:?}");
    assert!(closed[..10].iter().all(|c| *c), "oldest first: {closed:?}");
    assert!(closed_by(second, soon()).await.iter().all(|c| !*c));
    // A normal request still gets a place.
    answers_quickly(h.addr()).await;
    assert!(
        metric(
            &h,
            "palisade_connections_closed_total{listener=\"proxy\",reason=\"shed\"}"
        )
        .await
            >= 70.0
    );

    // Busy connections are never shed: beyond the cap, new ones are refused.
    let h = start("[server.connections]\nmax_per_peer = 3\n", ROUTES).await;
    let addr = h.addr();
    let busy: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move { send(addr, "GET", "/slow/1500", &[], Bytes::new()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let refused = open_many(addr, LOCAL, 1, b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut tcp = refused.into_iter().next().unwrap();
    let (reply, closed) = crate::support::read_until_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed && reply.is_empty(), "{reply}");
    for b in busy {
        assert_eq!(b.await.unwrap().status, 200);
    }
    answers_quickly(addr).await;
}

/// The soft and hard `Max open files` of a process.
fn nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut f = line.split_whitespace().skip(3);
    (f.next().unwrap().into(), f.next().unwrap().into())
}

/// `palisade serve` started after the shell's `limits` (`ulimit ...`): its soft and hard
/// descriptor limits once it listens, and what it wrote to stderr.
fn serve_under(limits: &str) -> anyhow::Result<(String, String, String)> {
    let up = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    crate::support::Config::new(up.local_addr()?)
        .text(ROUTES)
        .write(&path)?;
    let log = dir.path().join("stderr.log");
    let serving = serve_with(
        &path,
        &[],
        Some(limits),
        std::fs::File::create(&log)?.into(),
    );
    let (soft, hard) = nofile(serving.child.id());
    drop(serving);
    Ok((soft, hard, std::fs::read_to_string(&log)?))
}

#[test]
fn item56_palisade_serve_raises_its_soft_descriptor_limit_to_the_hard_one() -> anyhow::Result<()> {
    let (soft, hard, stderr) = serve_under("ulimit -Sn 256")?;
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    assert!(!stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    Ok(())
}

#[test]
fn item56_palisade_serve_warns_when_its_hard_descriptor_limit_is_low() -> anyhow::Result<()> {
    let (soft, hard, stderr) = serve_under("ulimit -n 512")?;
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    Ok(())
}

/// Shared by the submodules: a gateway with one route, `extra` under `[server]`.
async fn gateway(extra: &str) -> Harness {
    start(extra, ROUTES).await
}

/// A TCP client from 127.0.0.1.
async fn connect(addr: SocketAddr) -> TcpStream {
    open_many(addr, LOCAL, 1, b"").await.pop().unwrap()
}

//! Real parts for gateway tests: an upstream on loopback, a gateway started from a config
//! file (built by [`Config`]) in a temp dir, an HTTP client, a raw TCP client, the
//! ledger's blocks, and the `palisade` binary ([`cli`]).

pub(crate) mod cli;
pub(crate) mod config;

pub(crate) use config::{Config, Route};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_gateway::{Gateway, Running};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A JSON document with PII, as the `/pii` upstream path returns it.
pub(crate) fn pii_doc() -> Value {
    json!({
        "id": 7,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "ssn": "123-45-6789",
        "card": "4111 1111 1111 1111",
        "contacts": [{"email": "b@example.com", "ssn": "219-09-9999"}],
        "internal": {"score": 3}
    })
}

/// A real HTTP upstream on loopback that counts the requests it receives.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Paths: `/pii` (JSON with PII), `/text` (text with an SSN), `/bytes` (not UTF-8),
/// `/big` (2 MiB JSON), `/slow/<ms>` (answers after a delay), anything else: an echo
/// of the method, path, query, headers and body as JSON.
pub(crate) async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

async fn answer(req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let (ctype, bytes): (&str, Bytes) = if path == "/pii" {
        ("application/json", pii_doc().to_string().into())
    } else if path == "/tricky" {
        // Duplicate keys (the last wins, as in the serializer), an escaped key, a number.
        let doc = r#"{"user":{"ssn":"first","ssn":"219-09-9999"},"escaped":{"\u0073sn":"078-05-1120"},"list":[{"ssn":123456789},{"deep":[{"ssn":"219-09-9999"}]}],"keep":"ok"}"#;
        ("application/json", doc.into())
    } else if path == "/auth-digest" {
        // Proves what credential arrived without echoing it.
        use sha2::Digest as _;
        let digest = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| hex::encode(sha2::Sha256::digest(v.as_bytes())))
        };
        let doc = json!({
            "authorization": digest("authorization"),
            "x-api-key": digest("x-api-key"),
        });
        ("application/json", doc.to_string().into())
    } else if path == "/text" {
        ("text/plain", "call me, my ssn is 123-45-6789".into())
    } else if path == "/bytes" {
        (
            "application/octet-stream",
            Bytes::from_static(&[0xff, 0xfe, b'1', b'2', b'3', b'-', b'4', b'5']),
        )
    } else if path == "/big" {
        let big = json!({ "ssn": "123-45-6789", "pad": "x".repeat(2 << 20) });
        ("application/json", big.to_string().into())
    } else {
        if let Some(ms) = path
            .strip_prefix("/slow/")
            .and_then(|m| m.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let headers: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let echo = json!({
            "method": parts.method.as_str(),
            "path": path,
            "query": parts.uri.query().unwrap_or(""),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
            "len": body.len(),
        });
        ("application/json", echo.to_string().into())
    };
    let mut res = hyper::Response::new(Full::new(bytes));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    res
}

/// A running gateway and the temp dir holding its config and ledger.
pub(crate) struct Harness {
    pub(crate) running: Running,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) upstream: Upstream,
}

impl Harness {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.running.proxy_addr()
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("palisade.toml")
    }

    pub(crate) fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    /// The admin listener's `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        let admin = self.running.admin_addr().expect("an admin listener");
        send(admin, "GET", "/metrics", &[], Bytes::new())
            .await
            .text()
    }

    /// Every block's record, in chain order.
    pub(crate) fn blocks(&self) -> Vec<Value> {
        blocks(&self.ledger_path())
    }

    /// The record of the request with this correlation id.
    pub(crate) fn block_for(&self, reply: &Reply) -> Value {
        let cid = reply.header("x-correlation-id").expect("x-correlation-id");
        self.blocks()
            .into_iter()
            .find(|b| b["correlation_id"] == cid)
            .unwrap_or_else(|| panic!("no block for {cid}"))
    }
}

/// Every record in a SQLite ledger.
pub(crate) fn blocks(db: &Path) -> Vec<Value> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT record FROM ledger ORDER BY seq")
        .unwrap();
    stmt.query_map((), |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| serde_json::from_str(&r.unwrap()).unwrap())
        .collect()
}

/// Replaces `@NAME` with built guest paths and `@LUA` with the Lua policies' directory.
pub(crate) fn expand(text: &str) -> String {
    let mut out = text.replace(
        "@LUA",
        &format!("{}/policies/lua", palisade_test_artifacts::WORKSPACE),
    );
    for (name, path) in palisade_test_artifacts::ALL {
        out = out.replace(&format!("@{}", name.to_uppercase().replace('-', "_")), path);
    }
    out
}

/// Starts a gateway with the base config, `server_extra` under `[server]` and `routes`
/// (TOML text), in front of a fresh upstream.
pub(crate) async fn start(server_extra: &str, routes: &str) -> Harness {
    start_with(|up, _| Config::new(up).server(server_extra).text(routes)).await
}

/// Every `tracing` event of every gateway this test process has run (JSON lines; debug
/// for Palisade's crates, so a line per request): what an operator's log would hold.
/// Catalogue items 44 and 47 check it, across all tests, for the values they protect.
pub(crate) fn log_text() -> String {
    // Copy under the lock, decode outside it: every gateway of the process writes its
    // events through this lock, and decoding megabytes in a debug build takes a while.
    let bytes = log_buffer().lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> &'static Arc<std::sync::Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(
                "info,palisade_gateway=debug,palisade_runtime=debug,palisade_ledger=debug",
            )
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buffer
    })
}

/// Appends what the subscriber writes (an event at a time) to the shared buffer.
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts a gateway from a whole config file: `make` gets the fresh upstream's address
/// and the temp dir (for key files) and returns the file: a [`Config`] or, for a test
/// about unusual files, literal text.
pub(crate) async fn start_with<C: std::fmt::Display>(
    make: impl FnOnce(SocketAddr, &Path) -> C,
) -> Harness {
    log_buffer();
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    std::fs::write(&path, expand(&make(upstream.addr, dir.path()).to_string())).unwrap();
    let gateway = Gateway::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let running = gateway.start().await.unwrap();
    Harness {
        running,
        dir,
        upstream,
    }
}

/// A response, fully read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// Sends one HTTP/1.1 request with a real client.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::new(Full::new(body.into()));
    *req.method_mut() = method.parse().unwrap();
    *req.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], Bytes::new()).await
}

/// Writes raw bytes and reads until the server closes (or `wait` passes); returns what
/// came back and whether the server closed the connection.
pub(crate) async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    read_until_close(&mut tcp, wait).await
}

pub(crate) async fn read_until_close(tcp: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

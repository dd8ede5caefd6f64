//! What the fleet features cost per request (issue 23), each beside its baseline in one
//! run, through the whole pipeline in process (`Pipeline::handle`: routing, limits,
//! the upstream call on loopback, audit with `async` durability):
//!
//! - `limits`: a tenant rate limit counted in this process (the baseline) vs counted in
//!   Redis with the default lease (16 tokens per round trip) vs a lease of 1 (a round
//!   trip per request: the worst case), and vs Redis down (degraded: local decisions);
//! - `traces`: no `[traces]` (the baseline) vs traces on but not sampled (`sample = 0`)
//!   vs every request sampled (spans built and queued for an OTLP collector that answers
//!   on loopback);
//! - `export`: no `[[audit.export]]` (the baseline) vs a JSON-lines sink exporting every
//!   block while the requests run (the exporter reads the ledger and writes and fsyncs
//!   the file beside the request path; its cost shows as CPU taken from it).
//!
//! `cargo bench --bench fleet` (needs `redis-server` on the PATH for the Redis rows;
//! without it they are skipped).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_gateway::Gateway;
use palisade_gateway::Running;
use tokio::net::TcpListener;

/// A loopback HTTP server answering every request with `body`.
async fn serve(body: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(
                            body,
                        ))))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis(child, port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway in `dir` with one route to `upstream` and `extra` config.
async fn gateway(
    dir: &std::path::Path,
    upstream: SocketAddr,
    tenant: &str,
    extra: &str,
) -> Running {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
[audit]
sqlite = "audit.db"
durability = "async"
{extra}
[[tenant]]
name = "acme"
{tenant}
[[upstream]]
name = "up"
url = "http://{upstream}"
[[route]]
name = "orders"
tenant = "acme"
upstream = "up"
path = "/"
"#
    );
    let path = dir.join("palisade.toml");
    std::fs::write(&path, text).unwrap();
    Gateway::from_file(&path).unwrap().start().await.unwrap()
}

/// Time per request through `running`'s pipeline (`iters` requests one after another).
fn per_request(rt: &tokio::runtime::Runtime, running: &Running, iters: u64) -> Duration {
    let pipeline = running.pipeline().clone();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    rt.block_on(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let req = http::Request::get("http://bench.test/orders")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = pipeline.handle(req, peer).await;
            let _ = res.into_body().collect().await;
        }
        start.elapsed()
    })
}

fn fleet(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(serve(b"{\"ok\":true}"));
    // A limit no row reaches: what is measured is the counting, not refusals.
    let limit = "rate_limit = { per_s = 1000000, burst = 1000000 }";
    let redis = Redis::start();
    let mut rows: Vec<(&str, String)> = vec![("local", String::new())];
    if let Some(r) = &redis {
        let url = format!("url = \"redis://127.0.0.1:{}/0\"", r.1);
        rows.push((
            "redis_lease_16",
            format!("[fleet]\nsize = 2\n[fleet.redis]\n{url}\n"),
        ));
        rows.push((
            "redis_lease_1",
            format!("[fleet]\nsize = 2\nlease = 1\n[fleet.redis]\n{url}\n"),
        ));
    }
    // Redis down: nothing listens there; decisions are local after the first failure.
    rows.push((
        "redis_down",
        "[fleet]\nsize = 2\n[fleet.redis]\nurl = \"redis://127.0.0.1:1/0\"\n".into(),
    ));
    let mut g = c.benchmark_group("fleet/limits");
    for (name, extra) in &rows {
        let dir = tempfile::tempdir().unwrap();
        let running = rt.block_on(gateway(dir.path(), upstream, limit, extra));
        std::thread::sleep(Duration::from_millis(300));
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| per_request(&rt, &running, iters))
        });
        rt.block_on(running.shutdown());
    }
    g.finish();

    let collector = rt.block_on(serve(b""));
    let mut g = c.benchmark_group("fleet/traces");
    for (name, extra) in [
        ("off", String::new()),
        (
            "unsampled",
            format!("[traces]\nendpoint = \"http://{collector}/v1/traces\"\nsample = 0.0\n"),
        ),
        (
            "sampled",
            format!("[traces]\nendpoint = \"http://{collector}/v1/traces\"\nmax_queue = 65536\n"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let running = rt.block_on(gateway(dir.path(), upstream, "", &extra));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| per_request(&rt, &running, iters))
        });
        rt.block_on(running.shutdown());
    }
    g.finish();
}

fn export(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(serve(b"{\"ok\":true}"));
    let mut g = c.benchmark_group("fleet/export");
    for (name, extra) in [
        ("off", ""),
        (
            "jsonl",
            "[[audit.export]]\nname = \"archive\"\nkind = \"jsonl\"\npath = \"export.jsonl\"\n",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let running = rt.block_on(gateway(dir.path(), upstream, "", extra));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| per_request(&rt, &running, iters))
        });
        rt.block_on(running.shutdown());
        if name == "jsonl" {
            let lines = std::fs::read_to_string(dir.path().join("export.jsonl"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            assert!(lines > 0, "the sink received nothing");
        }
    }
    g.finish();
}

criterion_group!(benches, fleet, export);
criterion_main!(benches);

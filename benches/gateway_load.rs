//! Gateway load: requests per second, p50/p99 latency and CPU time per request for a plain
//! hyper reverse proxy (the baseline), nginx (Debian's package), and Palisade with no
//! policy (audit ledger `sync`, and again `async` to show the ledger's share), with JWT
//! auth + a Wasm request policy + built-in redaction + audit, and the same with a Lua
//! policy. One upstream on loopback.
//!
//! `cargo bench --bench gateway_load` (figures in docs/benchmarks.md). nginx's row needs
//! `nginx` on the PATH (`apt-get install nginx`); without it the row is skipped. With
//! `PALISADE_BASELINE_BIN=/path/to/palisade` (another build, e.g. the previous commit's),
//! its Palisade rows are measured in the same run, each beside this build's.
//!
//! Each proxy runs as its own process pinned to CPU 1 (`taskset`; see
//! `PALISADE_BENCH_PROXY_CPUS` below); this process (the load generator and the upstream)
//! pins itself to CPU 0. For each proxy: a closed loop with 32 connections for the highest
//! rate it sustains, then open loops at rising fixed rates (1k to 30k requests/s), whose
//! latencies are measured from each request's scheduled send time (so a stall counts
//! against every request it delays, not just one). A proxy's sweep stops at the first rate
//! it falls over at: under 0.9x the offered rate achieved, or a p99 over 100 ms (that
//! point is still reported).
//!
//! Output: one markdown table (each row's CPU per request against hyper's at the same load,
//! throughput against nginx's maximum, p99 against nginx's at the same rate), then
//! `target/criterion/gateway_load/latency.svg` (p50 and p99 against offered load, one
//! colour per row) and the points behind it, `points.csv` beside it.
//!
//! Environment:
//! - `PALISADE_BENCH_SECS`: each point's length in seconds (default 5; `0.5` for a quick
//!   look, whose figures are noisier);
//! - `PALISADE_BENCH_ROWS`: comma-separated parts of row labels, e.g. `hyper,nginx,Lua`;
//!   only the rows whose label contains one of them (ignoring case) run;
//! - `PALISADE_BENCH_PROXY_CPUS`: the proxies' CPU list for `taskset -c` (default `1`);
//!   `0,1` measures how they scale to two cores, sharing CPU 0 with the load generator.
//!
//! A quick look at two rows: `PALISADE_BENCH_SECS=1 PALISADE_BENCH_ROWS=hyper,wasm cargo
//! bench --bench gateway_load`.

mod charts;
#[path = "gateway_load/report.rs"]
mod report;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

const CLOSED_LOOP_CONNECTIONS: usize = 32;
const OPEN_LOOP_CONNECTIONS: usize = 128;
/// The open-loop sweep's offered rates (requests/s), lowest first.
const FIXED_RATES: [u64; 8] = [1_000, 2_000, 3_000, 5_000, 8_000, 12_000, 20_000, 30_000];
/// A proxy that achieves less than this share of the offered rate has fallen over.
const MIN_ACHIEVED_SHARE: f64 = 0.9;
/// A proxy whose p99 is over this at a fixed rate has fallen over.
const MAX_P99: Duration = Duration::from_millis(100);
/// The rows the others are compared with (by label).
const HYPER: &str = "hyper reverse proxy";
const NGINX: &str = "nginx";

/// The bench's settings, read once from the environment (the header comment lists them).
struct Options {
    /// Each load point's length: `PALISADE_BENCH_SECS`, 5 s by default.
    run: Duration,
    /// `PALISADE_BENCH_ROWS`, lower-cased: a row runs if its label contains one of
    /// them. All rows run when it is unset.
    rows: Option<Vec<String>>,
    /// The proxies' `taskset -c` CPU list: `PALISADE_BENCH_PROXY_CPUS`, `1` by default.
    proxy_cpus: String,
}

impl Options {
    /// Reads the environment. Panics on a `PALISADE_BENCH_SECS` that is not a positive
    /// number of seconds.
    fn from_env() -> Self {
        let run = match std::env::var("PALISADE_BENCH_SECS") {
            Ok(secs) => secs
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| panic!("PALISADE_BENCH_SECS={secs:?}: not a positive number")),
            Err(_) => Duration::from_secs(5),
        };
        let rows = std::env::var("PALISADE_BENCH_ROWS").ok().map(|list| {
            list.split(',')
                .map(|part| part.trim().to_lowercase())
                .filter(|part| !part.is_empty())
                .collect()
        });
        let proxy_cpus =
            std::env::var("PALISADE_BENCH_PROXY_CPUS").unwrap_or_else(|_| "1".to_string());
        Options {
            run,
            rows,
            proxy_cpus,
        }
    }

    /// Whether the row labelled `label` is to run.
    fn runs(&self, label: &str) -> bool {
        let label = label.to_lowercase();
        self.rows
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|part| label.contains(part.as_str())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hyper-proxy") {
        hyper_proxy(args[2].parse().unwrap(), args[3].parse().unwrap());
        return;
    }
    let opts = Options::from_env();
    // Off the proxies' core.
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&opts));
}

/// The upstream's answer: JSON with PII for the redaction rows to mask.
fn answer() -> Bytes {
    Bytes::from(
        serde_json::json!({
            "id": 42, "name": "Jane Roe", "email": "jane.roe@example.com",
            "ssn": "123-45-6789", "status": "shipped",
            "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]
        })
        .to_string(),
    )
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = answer();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let mut res = hyper::Response::new(Full::new(body));
                        res.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// The baseline: a plain hyper reverse proxy (pooled client, streamed bodies).
fn hyper_proxy(listen: SocketAddr, upstream: SocketAddr) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build_http::<hyper::body::Incoming>();
            let listener = TcpListener::bind(listen).await.unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let client = client.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                            let client = client.clone();
                            async move {
                                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                                *req.uri_mut() =
                                    format!("http://{upstream}{path}").parse().unwrap();
                                client.request(req).await
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
}

/// A proxy process under test.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    /// SIGTERM first: nginx's master then stops its worker (a SIGKILLed master leaves
    /// the worker running, holding the port and this process's stdout).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listening on {addr}");
}

/// `program` run by `taskset` on the proxies' CPUs.
fn pinned(program: impl AsRef<std::ffi::OsStr>, cpus: &str) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus]).arg(program);
    cmd
}

async fn start_hyper(cpus: &str, upstream: SocketAddr) -> Proxy {
    let addr = free_port();
    let child = pinned(std::env::current_exe().unwrap(), cpus)
        .args(["--hyper-proxy", &addr.to_string(), &upstream.to_string()])
        .spawn()
        .unwrap();
    wait_listening(addr).await;
    Proxy { child, addr }
}

async fn start_nginx(cpus: &str, dir: &Path, upstream: SocketAddr) -> Option<Proxy> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let addr = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream app {{ server {upstream}; keepalive 256; }}
  server {{
    listen {addr};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let child = pinned(nginx, cpus)
        .args(["-e", &dir.join("nginx-error.log").display().to_string()])
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .spawn()
        .unwrap();
    wait_listening(addr).await;
    Some(Proxy { child, addr })
}

const JWT_SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

/// Palisade with the bench's routes; `durability` is the audit ledger's (`sync`, the
/// default, or `async`).
async fn start_palisade(
    cpus: &str,
    bin: &str,
    dir: &Path,
    upstream: SocketAddr,
    durability: &str,
) -> Proxy {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("jwt.secret"), JWT_SECRET).unwrap();
    let policies = Path::new(palisade_test_artifacts::WORKSPACE).join("policies/lua");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[audit]
sqlite = "audit.db"
durability = "{durability}"

[runtime]
cache_dir = "cache"

[[auth.jwt]]
name = "idp"
issuer = "https://idp.bench"
tenant = "bench"
[[auth.jwt.key]]
algorithm = "HS256"
secret_file = "jwt.secret"

[[tenant]]
name = "bench"

[[upstream]]
name = "app"
url = "http://{upstream}"

[[route]]
name = "plain"
tenant = "bench"
upstream = "app"
path = "/plain"

[[route]]
name = "full"
tenant = "bench"
upstream = "app"
path = "/full"
auth = {{ schemes = ["jwt"] }}
request = [{{ module = "{wasm}", config = {{ "request.set.x-policy" = "wasm" }} }}]
redact = [{{ path = "$..email" }}, {{ path = "$..ssn" }}]

[[route]]
name = "lua"
tenant = "bench"
upstream = "app"
path = "/lua"
auth = {{ schemes = ["jwt"] }}
request = [{{ module = "{lua}", config = {{ "request.set.x-policy" = "lua" }} }}]
redact = [{{ path = "$..email" }}, {{ path = "$..ssn" }}]
"#,
        wasm = palisade_test_artifacts::INJECT_HEADERS,
        lua = policies.join("inject-headers.lua").display(),
    );
    let path = dir.join("palisade.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = pinned(bin, cpus)
        .args(["serve", "--log", "warn", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, _) = palisade_test_artifacts::serve_addresses(&mut child);
    wait_listening(addr).await;
    Proxy { child, addr }
}

fn token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "bench-client", "iss": "https://idp.bench", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap()
}

/// CPU time (user + system) of a process and its children, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let own = |pid: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    };
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    own(&pid.to_string()) + children.split_whitespace().map(own).sum::<u64>()
}

/// One row's figures at one load.
struct Point {
    /// The row's label.
    row: &'static str,
    /// The offered rate (requests/s), or `None` for the closed loop.
    rate: Option<u64>,
    /// What was measured.
    run: Run,
}

impl Point {
    /// Whether the proxy fell over at this point's fixed rate: it achieved under
    /// [`MIN_ACHIEVED_SHARE`] of it, or its p99 went over [`MAX_P99`]. Its sweep stops here.
    fn fell_over(&self) -> bool {
        self.rate.is_some_and(|rate| {
            self.run.rps < MIN_ACHIEVED_SHARE * rate as f64 || self.run.p99 > MAX_P99
        })
    }
}

/// What one load run measured.
struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    cpu_us_per_request: f64,
}

/// Sends requests to `proxy` for `run`: at `rate` per second (open loop) or as fast as
/// `CLOSED_LOOP_CONNECTIONS` connections go (closed loop, `rate` = `None`).
async fn load(
    proxy: &Proxy,
    path: &str,
    auth: Option<&str>,
    rate: Option<u64>,
    run: Duration,
) -> Run {
    let connections = if rate.is_some() {
        OPEN_LOOP_CONNECTIONS
    } else {
        CLOSED_LOOP_CONNECTIONS
    };
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let total = rate.map_or(u64::MAX, |r| (r as f64 * run.as_secs_f64()).ceil() as u64);
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r as f64));
    let cpu_before = cpu_ticks(proxy.child.id());
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let deadline = start + run;
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (next, errors) = (next.clone(), errors.clone());
        let (addr, path, auth) = (proxy.addr, path.to_string(), auth.map(str::to_string));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let at = match interval {
                    Some(iv) => {
                        let at = start + iv.mul_f64(i as f64);
                        tokio::time::sleep_until(at).await;
                        at
                    }
                    None => tokio::time::Instant::now(),
                };
                if at >= deadline {
                    break;
                }
                if sender.is_none() {
                    let Ok(tcp) = TcpStream::connect(addr).await else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let Ok((s, conn)) =
                        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
                            .await
                    else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let s = sender.as_mut().unwrap();
                let mut req = get(&path, auth.as_deref());
                req.headers_mut()
                    .insert(http::header::HOST, http::HeaderValue::from_static("bench"));
                let ok = match s.send_request(req).await {
                    Ok(res) => {
                        let status = res.status();
                        res.into_body().collect().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(tokio::time::Instant::now() - at);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    sender = None;
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed().min(run + Duration::from_secs(30));
    let ticks = cpu_ticks(proxy.child.id()) - cpu_before;
    latencies.sort();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let n = latencies.len().max(1) as f64;
    Run {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(50),
        p99: pct(99),
        errors: errors.load(Ordering::Relaxed),
        // /proc ticks are 1/100 s.
        cpu_us_per_request: ticks as f64 * 10_000.0 / n,
    }
}

async fn run(opts: &Options) {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token();
    let cpus = opts.proxy_cpus.as_str();
    let hyper = start_hyper(cpus, upstream).await;
    let nginx = start_nginx(cpus, dir.path(), upstream).await;
    if nginx.is_none() {
        eprintln!("nginx not found: its row is skipped (apt-get install nginx)");
    }
    let bin = env!("CARGO_BIN_EXE_palisade");
    let palisade = start_palisade(cpus, bin, dir.path(), upstream, "sync").await;
    // The same gateway with the ledger off the request path: the difference is the
    // ledger's share of a request.
    let palisade_async =
        start_palisade(cpus, bin, &dir.path().join("async"), upstream, "async").await;
    // Another build of `palisade` (an earlier commit) measured in the same run, row by row
    // beside this one: `PALISADE_BASELINE_BIN=/path/to/palisade`.
    let baseline = match std::env::var("PALISADE_BASELINE_BIN") {
        Ok(bin) => {
            Some(start_palisade(cpus, &bin, &dir.path().join("baseline"), upstream, "sync").await)
        }
        Err(_) => None,
    };
    let baseline_rows = |label: &'static str, path: &'static str, auth: Option<&'static str>| {
        baseline.as_ref().map(|b| (label, b, path, auth))
    };
    let token: &'static str = Box::leak(token.into_boxed_str());
    // hyper and nginx first: the other rows are compared with their figures.
    let rows: Vec<(&'static str, &Proxy, &str, Option<&str>)> = [
        Some((HYPER, &hyper, "/plain", None)),
        nginx.as_ref().map(|n| (NGINX, n, "/plain", None)),
        Some(("Palisade, no policy (audit on)", &palisade, "/plain", None)),
        baseline_rows("baseline build: no policy (audit on)", "/plain", None),
        Some((
            "Palisade, no policy (audit on, async durability)",
            &palisade_async,
            "/plain",
            None,
        )),
        Some((
            "Palisade, JWT + Wasm + redaction + audit",
            &palisade,
            "/full",
            Some(token),
        )),
        baseline_rows(
            "baseline build: JWT + Wasm + redaction + audit",
            "/full",
            Some(token),
        ),
        Some((
            "Palisade, JWT + Lua + redaction + audit",
            &palisade,
            "/lua",
            Some(token),
        )),
        baseline_rows(
            "baseline build: JWT + Lua + redaction + audit",
            "/lua",
            Some(token),
        ),
    ]
    .into_iter()
    .flatten()
    .filter(|(label, ..)| opts.runs(label))
    .collect();
    println!("{}", report::TABLE_HEAD);
    let mut points: Vec<Point> = Vec::new();
    for (row, proxy, path, auth) in rows {
        // Warm up (connections, compiled code, the ledger file).
        load_quiet(proxy, path, auth).await;
        for rate in std::iter::once(None).chain(FIXED_RATES.map(Some)) {
            let run = load(proxy, path, auth, rate, opts.run).await;
            points.push(Point { row, rate, run });
            let point = points.last().unwrap();
            println!("{}", report::table_row(point, &points));
            if point.fell_over() {
                break;
            }
        }
    }
    report::write_files(&points);
}

/// A GET of `uri`, with the bearer token `auth` if any.
fn get(uri: &str, auth: Option<&str>) -> hyper::Request<Empty<Bytes>> {
    let mut req = hyper::Request::new(Empty::new());
    *req.uri_mut() = uri.parse().unwrap();
    if let Some(t) = auth {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    req
}

async fn load_quiet(proxy: &Proxy, path: &str, auth: Option<&str>) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    for _ in 0..200 {
        let req = get(&format!("http://{}{path}", proxy.addr), auth);
        let res = client.request(req).await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        if path != "/plain" {
            assert!(!body.windows(11).any(|w| w == b"123-45-6789"), "redacted");
        }
    }
}

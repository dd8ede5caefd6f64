//! The gateway as a server: reload under load, graceful shutdown, TLS 1.3 with h2 and
//! HTTP/1.1, `palisade serve` with SIGHUP, `palisade check-config` (catalogue 37, 39).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::cli::{run, serve, serve_with, spawn};
use crate::support::{Config, Route, expand, get, start_with, upstream};

/// The base config with one route whose policy sets `x-version: V` on the request.
fn versioned(up: SocketAddr, v: &str) -> Config {
    Config::new(up).route(Route::new("v").path("/").request_with(
        "@INJECT_HEADERS",
        &format!(r#"config = {{ "request.set.x-version" = "{v}" }}"#),
    ))
}

/// Sends `sig` (`-HUP`, `-TERM`) to a `palisade serve` process.
fn signal(child: &std::process::Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_switches_routes() -> anyhow::Result<()> {
    let h = start_with(|up, _| versioned(up, "v1")).await;
    let addr = h.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let r = get(addr, "/").await;
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::SeqCst)
                    } else {
                        bad.fetch_add(1, Ordering::SeqCst)
                    };
                }
            })
        })
        .collect();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let v = format!("v{}", round + 2);
        versioned(h.upstream.addr, &v).write(&h.config_path())?;
        h.running.reload()?;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await?;
    }
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "a request failed during reload"
    );
    assert!(ok.load(Ordering::SeqCst) > 20);
    assert_eq!(get(addr, "/").await.json()["headers"]["x-version"], "v7");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_refused_on_reload_and_the_routes_in_service_stay()
-> anyhow::Result<()> {
    let h = start_with(|up, _| versioned(up, "v7")).await;
    std::fs::write(h.config_path(), "[server]\nlisten = 'nonsense'\n")?;
    assert!(h.running.reload().is_err());
    assert_eq!(
        get(h.addr(), "/").await.json()["headers"]["x-version"],
        "v7"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish_and_audits_them() {
    let h = start_with(|up, _| versioned(up, "v1")).await;
    let addr = h.addr();
    let slow = tokio::spawn(async move { get(addr, "/slow/800").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ledger = h.ledger_path();
    let crate::support::Harness {
        running,
        dir,
        upstream: _u,
    } = h;
    running.shutdown().await;
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request finished");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    let cid = r.header("x-correlation-id").unwrap();
    assert!(
        crate::support::blocks(&ledger)
            .iter()
            .any(|b| b["correlation_id"] == cid.as_str())
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_serves_http2_and_http11_by_alpn() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "tls = {{ cert = \"{0}/cert.pem\", key = \"{0}/key.pem\" }}",
        dir.path().display()
    );
    let h = start_with(|up, _| versioned(up, "tls").server(&tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    for (alpn, h2) in [(b"h2".to_vec(), true), (b"http/1.1".to_vec(), false)] {
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn];
        let tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(
            stream.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let req = http::Request::builder()
            .uri(format!("https://localhost:{}/hello", h.addr().port()))
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        };
        assert_eq!(
            res.version(),
            if h2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
        assert_eq!(res.status(), 200);
        let body: serde_json::Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["headers"]["x-version"], "tls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_serve_reloads_on_sighup() -> anyhow::Result<()> {
    let up = upstream().await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    versioned(up.addr, "before").write(&path)?;
    let serving = serve(&path);
    let addr = serving.addr;
    assert_eq!(
        get(addr, "/").await.json()["headers"]["x-version"],
        "before"
    );
    versioned(up.addr, "after").write(&path)?;
    signal(&serving.child, "-HUP");
    let mut seen = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = get(addr, "/").await.json()["headers"]["x-version"]
            .as_str()
            .unwrap()
            .to_string();
        if seen == "after" {
            break;
        }
    }
    assert_eq!(seen, "after");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_serve_drains_on_sigterm() -> anyhow::Result<()> {
    let up = upstream().await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    versioned(up.addr, "before").write(&path)?;
    let mut serving = serve(&path);
    signal(&serving.child, "-TERM");
    assert!(
        serving.child.wait()?.success(),
        "SIGTERM is a clean shutdown"
    );
    Ok(())
}

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let huge = "a".repeat(5000);
    std::fs::write(
        &path,
        expand(&format!(
            r#"[server]
listen = "127.0.0.1:0"

[[tenant]]
name = "acme"
mandatory_pii = ["$.customer.ssn"]

[[upstream]]
name = "up"
url = "http://127.0.0.1:1"

[[route]]
name = "no-upstream"
tenant = "acme"
upstream = "missing"
[[route.redact]]
path = "$.customer.ssn"

[[route]]
name = "huge-regex"
tenant = "acme"
upstream = "up"
path = "/r"
[[route.redact]]
path = "$.customer.ssn"
[[route.redact]]
regex = "{huge}"

[[route]]
name = "uncovered"
tenant = "acme"
upstream = "up"
path = "/u"
[[route.redact]]
path = "$.customer.name"

[[route]]
name = "bad-module"
tenant = "nobody"
upstream = "up"
path = "/m"
[[route.request]]
module = "does-not-exist.wasm"
[[route.response]]
module = "@INJECT_HEADERS"
fail = "open"
"#
        )),
    )
    .unwrap();
    let out = run(
        None,
        &[],
        &["check-config", &path.display().to_string()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    // Each problem at the line of the key it is about, once; the rules numbered from 1.
    for expected in [
        format!("{p}:15:1: route \"no-upstream\": upstream \"missing\" is not defined"),
        format!(
            "{p}:26:1: route \"huge-regex\": redaction rule 2: invalid or oversized regex: 5000 bytes, limit 4096"
        ),
        format!(
            "{p}:34:9: route \"uncovered\": redaction does not cover mandatory PII path `$.customer.ssn` of tenant \"acme\""
        ),
        format!("{p}:39:1: route \"bad-module\": tenant \"nobody\" is not defined"),
        format!(
            "{p}:43:1: route \"bad-module\": module {}/does-not-exist.wasm: reading",
            dir.path().display()
        ),
        format!("{p}:46:1: route \"bad-module\": response policy"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.contains(&format!(
            "{p}: 6 problem(s) (1 tenants, 1 upstreams, 4 routes)"
        )),
        "{err}"
    );

    // `serve` refuses the same file with the same report.
    let out = run(
        None,
        &[],
        &["serve", "--config", &path.display().to_string()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not serving"));

    // A syntax error names its line.
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\nbogus = [\n").unwrap();
    let out = run(
        None,
        &[],
        &["check-config", &path.display().to_string()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&format!("{p}:3:")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn item37_slow_to_compile_regexes_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regex.toml");
    std::fs::write(
        &path,
        r#"[server]
listen = "127.0.0.1:0"
[[tenant]]
name = "acme"
[[upstream]]
name = "up"
url = "http://127.0.0.1:1"
[[route]]
name = "r"
tenant = "acme"
upstream = "up"
[[route.redact]]
regex = '(\w{100}){100}'
"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = run(
        None,
        &[],
        &["check-config", &path.display().to_string()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid or oversized regex") && err.contains("size limit"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_quickstart_serves_what_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = Path::new(palisade_test_artifacts::WORKSPACE);
    let dir_arg = dir.path().display().to_string();
    let mut child = spawn(
        Some(workspace),
        None,
        &[
            "quickstart",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--dir",
            &dir_arg,
        ],
        Stdio::piped(),
    );
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || line.starts_with("Ctrl-C") {
            break;
        }
        lines.push(line);
    }
    let curls: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("curl") || l.contains("| curl"))
        .collect();
    assert_eq!(curls.len(), 7, "{lines:?}");
    let run = |cmd: &str| {
        let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let customer: serde_json::Value = serde_json::from_str(&run(curls[0])).unwrap();
    assert_eq!(customer["ssn"], "[REDACTED]");
    assert_eq!(customer["card"], "[REDACTED:card]");
    assert!(customer["email"].as_str().unwrap().starts_with("[hash:"));
    assert_eq!(customer["customer_name"], "Ada Lovelace");
    assert!(customer.get("internal").is_none());
    let echo: serde_json::Value = serde_json::from_str(&run(curls[1])).unwrap();
    assert_eq!(echo["headers"]["x-demo-policy"], "wasm:inject-headers");
    assert!(run(curls[2]).starts_with("HTTP/1.1 400"));
    assert!(run(curls[3]).starts_with("HTTP/1.1 413"));
    assert!(run(curls[4]).starts_with("HTTP/1.1 401"));
    let order: serde_json::Value = serde_json::from_str(&run(curls[5])).unwrap();
    assert!(
        order["headers"]["x-palisade-identity"]
            .as_str()
            .unwrap()
            .starts_with("apikey:")
    );
    assert!(
        run(curls[6]).contains(
            "palisade_requests_total{tenant=\"demo\",route=\"customers\",status=\"200\"} 1"
        )
    );
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let verify_line = lines
        .iter()
        .find(|l| l.starts_with("cargo run -q -- verify"))
        .unwrap();
    let args: Vec<&str> = verify_line.split_whitespace().skip(4).collect();
    let out = crate::support::cli::run(Some(workspace), &[], &args, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The genesis block and the four proxied requests (metrics are not proxied).
    assert!(stdout.starts_with("7 blocks · chain intact"), "{stdout}");
}

/// `palisade serve --log-format json`: one JSON object per line on stderr, a line per
/// request at `debug`, reload problems as warnings; no header, path or query value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_serve_logs_json_lines_without_request_values() -> anyhow::Result<()> {
    let up = upstream().await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    versioned(up.addr, "before").write(&path)?;
    let log = dir.path().join("stderr.log");
    let mut serving = serve_with(
        &path,
        &[
            "--log-format",
            "json",
            "--log",
            "info,palisade_gateway=debug",
        ],
        None,
        std::fs::File::create(&log)?.into(),
    );
    let addr = serving.addr;

    let secret = "Bearer s3cr3t-t0ken-value";
    let reply = crate::support::send(
        addr,
        "GET",
        "/users/jane.roe@example.com?ssn=123-45-6789",
        &[("authorization", secret), ("x-api-key", "k3y-value-9")],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let cid = reply.header("x-correlation-id").unwrap();

    // A broken config on SIGHUP: refused, said as warnings, the old routes stay.
    std::fs::write(&path, "[[route]]\nname = 1\n")?;
    signal(&serving.child, "-HUP");
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if std::fs::read_to_string(&log)
            .unwrap()
            .contains("reload refused")
        {
            break;
        }
    }
    assert_eq!(get(addr, "/").await.status, 200);
    signal(&serving.child, "-TERM");
    assert!(serving.child.wait()?.success());

    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let find = |message: &str| {
        events
            .iter()
            .find(|e| e["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} event in {text}"))
    };
    let request = events
        .iter()
        .find(|e| e["message"] == "request" && e["correlation_id"] == cid.as_str())
        .unwrap_or_else(|| panic!("no request event for {cid} in {text}"));
    assert_eq!(request["level"], "DEBUG");
    assert_eq!(
        (
            &request["tenant"],
            &request["route"],
            &request["status"],
            &request["decision"]
        ),
        (&"acme".into(), &"v".into(), &200.into(), &"allowed".into())
    );
    assert_eq!(find("serving")["level"], "INFO");
    // Every problem is a warning of its own; the bad `name` at its line among them.
    let problems: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "config problem")
        .collect();
    assert!(
        problems.iter().all(|p| p["level"] == "WARN"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["issue"].as_str().unwrap().contains("palisade.toml:2:")),
        "{problems:?}"
    );
    assert_eq!(
        find("reload refused; the previous routes stay in service")["level"],
        "WARN"
    );
    find("shutting down; in-flight requests finish first");
    for value in [
        "s3cr3t-t0ken-value",
        "k3y-value-9",
        "jane.roe",
        "123-45-6789",
        "/users",
    ] {
        assert!(!text.contains(value), "{value} reached the log: {text}");
    }
    Ok(())
}

#[test]
fn a_bad_log_filter_is_a_usage_error() {
    let out = run(
        None,
        &[],
        &[
            "serve",
            "--log",
            "palisade_gateway=loud",
            "--config",
            "none.toml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a log filter"), "{stderr}");
}

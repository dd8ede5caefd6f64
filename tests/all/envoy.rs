//! Palisade as Envoy's ext_proc and ext_authz server (`[envoy]`), driven by a client
//! built from Envoy's own published protos (Python `xds-protos` + `grpcio`,
//! `envoy_client.py`) that carries each request as Envoy's filters do, to the real
//! upstream on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::{Config, Harness, start_with};

/// The pinned client packages, installed once into the shared test cache.
const PACKAGES: [&str; 3] = [
    "xds-protos==1.85.0",
    "grpcio==1.85.1",
    "grpcio-health-checking==1.85.1",
];

/// A Python 3 and the directory holding the client packages.
fn python() -> (&'static str, &'static Path) {
    static READY: OnceLock<(&'static str, PathBuf)> = OnceLock::new();
    let (py, dir) = READY.get_or_init(|| {
        let has_pip = |py: &str| {
            Command::new(py)
                .args(["-m", "pip", "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let find = || {
            ["python3", "/usr/bin/python3"]
                .into_iter()
                .find(|py| has_pip(py))
        };
        palisade_test_artifacts::debian_packages(&["python3", "python3-pip"], || find().is_some());
        let py = find().expect("these tests need Python 3 with pip: apt-get install python3-pip");
        let cache = std::env::temp_dir().join("palisade-test-cache");
        let dir = cache.join("envoy-client-1.85.0");
        if !dir.join("xds_protos-1.85.0.dist-info").exists() {
            let staging = cache.join(format!("envoy-client.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            let out = Command::new(py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--target",
                ])
                .arg(&staging)
                .args(PACKAGES)
                // Debian's pip refuses to touch the system site; --target does not.
                .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
                .output()
                .expect("pip runs");
            assert!(
                out.status.success(),
                "pip install {PACKAGES:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if std::fs::rename(&staging, &dir).is_err() {
                // Another test process got there first.
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
        (py, dir)
    });
    (py, dir)
}

/// Runs `cases` through `envoy_client.py` against the gateway's Envoy listener; one
/// result per case.
fn envoy(h: &Harness, cases: Value) -> Vec<Value> {
    envoy_with(h, cases, &[])
}

/// [`envoy`] with environment variables for the client (its TLS files).
fn envoy_with(h: &Harness, cases: Value, env: &[(&str, &Path)]) -> Vec<Value> {
    let grpc = h.running.envoy_addr().expect("an [envoy] listener");
    client(grpc, h.upstream.addr, cases, env)
}

/// Runs `cases` through `envoy_client.py` against `grpc`, with `upstream` as the
/// upstream "Envoy" calls.
fn client(
    grpc: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    cases: Value,
    env: &[(&str, &Path)],
) -> Vec<Value> {
    let (py, dir) = python();
    let mut child = Command::new(py)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/all/envoy_client.py"
        ))
        .arg(grpc.to_string())
        .arg(upstream.to_string())
        .env("PYTHONPATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "envoy_client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const SECRET: &str = "an hs256 secret of 32 bytes ok!!";

fn jwt(tenant: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "https://idp.test", "aud": "orders", "sub": "user-1", "tid": tenant, "exp": now + 600, "iat": now});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

const ROUTES: &str = r#"
[[route]]
name = "orders"
tenant = "acme"
upstream = "up"
path = "/orders"
auth = { schemes = ["jwt"] }

[[route.request]]
module = "@INJECT_HEADERS"
config = { "request.set.x-added" = "by-wasm", "request.remove" = "x-debug" }

[[route.request]]
module = "@LUA/reshape-json.lua"
config = { ops = '[{"op":"set","path":"/by","value":"lua"}]' }

[[route.response]]
module = "@LUA/inject-headers.lua"
config = { "response.set.x-checked" = "lua", "response.remove" = "x-internal" }

[[route]]
name = "plain"
tenant = "acme"
upstream = "up"
path = "/plain"
auth = { schemes = ["jwt"] }

[[route.request]]
module = "@INJECT_HEADERS"
config = { "request.set.x-added" = "by-wasm" }

[[route]]
name = "guarded"
tenant = "acme"
upstream = "up"
path = "/search"

[[route.request]]
module = "@BLOCK_PATTERNS"

[[route]]
name = "pii"
tenant = "acme"
upstream = "up"
path = "/pii"

[[route.redact]]
path = "$..ssn"

[[route]]
name = "office"
tenant = "acme"
upstream = "up"
path = "/office"
allow_ips = ["203.0.113.0/24"]

[[route]]
name = "closed"
tenant = "acme"
upstream = "up"
path = "/loop"

[[route.request]]
module = "@MISBEHAVE"
fuel = 5000000
"#;

async fn gateway() -> Harness {
    start_with(|up, dir: &Path| {
        std::fs::write(dir.join("hs256.key"), SECRET).unwrap();
        Config::new(up)
            .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
            .section(
                "auth",
                "[[auth.jwt]]\nname = \"idp\"\nissuer = \"https://idp.test\"\naudience = [\"orders\"]\n\
                 [[auth.jwt.key]]\nalgorithm = \"HS256\"\nsecret_file = \"hs256.key\"\n",
            )
            .section("envoy", "listen = \"127.0.0.1:0\"\nmessage_timeout_ms = 5000\n")
            .text(ROUTES)
    })
    .await
}

fn block(h: &Harness, cid: &str) -> Value {
    h.blocks()
        .into_iter()
        .find(|b| b["correlation_id"] == cid)
        .unwrap_or_else(|| panic!("no block for {cid}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_proc_and_ext_authz_run_the_pipeline_with_one_audit_block_per_exchange() {
    let h = gateway().await;
    let acme = format!("Bearer {}", jwt("acme"));
    let globex = format!("Bearer {}", jwt("globex"));
    let cases = json!([
        // 0: a full exchange: Wasm and Lua request policies change headers and body, a
        // Lua response policy changes headers; the caller's tenant claim is replaced.
        {"kind": "ext_proc", "method": "POST", "path": "/orders/7?x=1",
         "headers": {"authorization": acme, "x-debug": "1", "x-palisade-tenant": "globex",
                     "content-type": "application/json", "content-length": "15"},
         "body": "{\"item\":\"book\"}"},
        // 1: the JWT's tenant is not the route's: 403 before any body is read.
        {"kind": "ext_proc", "method": "POST", "path": "/orders/7",
         "headers": {"authorization": globex}, "body": "{}"},
        // 2: a Wasm policy's own denial, as Envoy's immediate response.
        {"kind": "ext_proc", "method": "POST", "path": "/search", "body": "q=' OR 1=1 --"},
        // 3: redaction of the upstream's response body.
        {"kind": "ext_proc", "method": "GET", "path": "/pii"},
        // 4: a policy that runs out of fuel under fail-closed: 500, a safe body.
        {"kind": "ext_proc", "method": "GET", "path": "/loop"},
        // 5: the route Envoy's own route names (gRPC metadata per route), with headers
        // Envoy hid from Palisade (forward_rules) that must not reach the upstream.
        {"kind": "ext_proc", "method": "POST", "path": "/plain/x", "route": "plain",
         "headers": {"authorization": acme}, "body": "{\"n\":1}",
         "hidden": {"x-real-ip": "6.6.6.6", "x-palisade-identity": "admin"}},
        // 6, 7: ext_authz allows with the headers to set, refuses without a token.
        {"kind": "ext_authz", "method": "GET", "path": "/plain/1",
         "headers": {"authorization": acme, "x-palisade-identity": "admin"}},
        {"kind": "ext_authz", "method": "GET", "path": "/plain/1"},
        // 8: a route that changes responses cannot be served by a check: fails closed.
        {"kind": "ext_authz", "method": "GET", "path": "/orders/1",
         "headers": {"authorization": acme}},
        // 9: gRPC health.
        {"kind": "health", "service": "envoy.service.ext_proc.v3.ExternalProcessor"},
        // 10, 11: the client's address Envoy states counts (Envoy is a trusted proxy).
        {"kind": "ext_proc", "method": "GET", "path": "/office", "source": "203.0.113.9:5555"},
        {"kind": "ext_proc", "method": "GET", "path": "/office", "source": "198.51.100.1:5555"},
        // 12: a named route never takes a request past its own path.
        {"kind": "ext_proc", "method": "POST", "path": "/plain/x", "route": "guarded", "body": "q"},
        // 13: an Envoy that ignores the BUFFERED override and streams the body in
        // pieces: refused at the first piece, never half-read.
        {"kind": "ext_proc", "method": "POST", "path": "/plain/x", "route": "plain",
         "headers": {"authorization": acme}, "body": "{\"n\":1,\"more\":2}", "streamed": true},
    ]);
    let r = envoy(&h, cases);

    // 0: what the upstream saw, what the client got.
    let full = &r[0];
    assert_eq!(full["status"], 200, "{full}");
    assert_eq!(
        full["bodies_sent"],
        json!(["request", "response"]),
        "{full}"
    );
    let echo: Value = serde_json::from_str(full["body"].as_str().unwrap()).unwrap();
    let seen = &echo["headers"];
    assert_eq!(seen["x-added"], "by-wasm");
    assert!(seen.get("x-debug").is_none(), "{seen}");
    assert_eq!(seen["x-palisade-tenant"], "acme");
    assert_eq!(seen["x-palisade-identity"], "user-1");
    assert!(
        seen.get("authorization").is_none(),
        "the caller's credential stays at the edge"
    );
    let sent: Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"item": "book", "by": "lua"}));
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(full["headers"]["x-checked"], "lua");
    let cid = full["headers"]["x-correlation-id"].as_str().unwrap();
    assert_eq!(seen["x-correlation-id"], cid);
    let b = block(&h, cid);
    assert_eq!(b["decision"], "allowed");
    assert_eq!(b["status"], 200);
    assert_eq!(b["route"], "orders");
    assert_eq!(b["identity"], "user-1");
    let modules: Vec<&str> = b["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        modules,
        ["inject-headers", "reshape-json", "inject-headers"]
    );

    // 1: tenant mismatch.
    let mismatch = &r[1];
    assert_eq!(mismatch["at"], "request_headers", "{mismatch}");
    assert_eq!(mismatch["immediate"]["status"], 403);
    assert_eq!(mismatch["bodies_sent"], json!([]));
    let b = block(
        &h,
        mismatch["immediate"]["headers"]["x-correlation-id"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(b["decision"], "denied");

    // 2: the policy's denial.
    let denied = &r[2];
    assert_eq!(denied["at"], "request_body", "{denied}");
    assert_eq!(denied["immediate"]["status"], 400);
    let b = block(
        &h,
        denied["immediate"]["headers"]["x-correlation-id"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(b["decision"], "denied");
    assert_eq!(b["route"], "guarded");

    // 3: redaction.
    let pii = &r[3];
    assert_eq!(pii["status"], 200, "{pii}");
    assert_eq!(pii["bodies_sent"], json!(["response"]));
    let text = pii["body"].as_str().unwrap();
    assert!(
        !text.contains("123-45-6789") && !text.contains("219-09-9999"),
        "{text}"
    );
    assert!(text.contains("Ada Lovelace"), "{text}");
    assert!(
        pii["headers"].get("content-length").is_none()
            || pii["headers"]["content-length"]
                .as_str()
                .and_then(|v| v.parse::<usize>().ok())
                == Some(text.len()),
        "{pii}"
    );
    let b = block(&h, pii["headers"]["x-correlation-id"].as_str().unwrap());
    assert!(
        b["redacted"].as_array().unwrap().len() >= 2,
        "the block names the redacted paths: {b}"
    );

    // 4: fail-closed.
    let closed = &r[4];
    assert_eq!(closed["immediate"]["status"], 500, "{closed}");
    let body: Value = serde_json::from_str(closed["immediate"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "policy_failed");
    let b = block(&h, body["correlation_id"].as_str().unwrap());
    assert_eq!(b["cause"], "fuel_exhausted");
    assert_eq!(b["decision"], "failed");

    // 5: the named route; its request policies get the body, the response is not read.
    let named = &r[5];
    assert_eq!(named["status"], 200, "{named}");
    assert_eq!(named["bodies_sent"], json!(["request"]));
    let echo: Value = serde_json::from_str(named["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-added"], "by-wasm");
    assert_eq!(echo["body"], "{\"n\":1}", "the body went through untouched");
    assert!(echo["headers"].get("x-real-ip").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-palisade-identity"], "user-1");
    assert_eq!(
        block(&h, named["headers"]["x-correlation-id"].as_str().unwrap())["route"],
        "plain"
    );

    // 6, 7, 8: ext_authz.
    let allowed = &r[6];
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["code"], 0);
    assert_eq!(allowed["set"]["x-added"], "by-wasm");
    assert_eq!(allowed["set"]["x-palisade-tenant"], "acme");
    assert_eq!(
        allowed["set"]["x-palisade-identity"], "user-1",
        "never the caller's claim"
    );
    assert!(
        allowed["remove"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "authorization")
    );
    let b = block(
        &h,
        allowed["response_headers"]["x-correlation-id"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        (b["decision"].as_str(), b["status"].as_u64()),
        (Some("allowed"), Some(200))
    );
    let refused = &r[7];
    assert_eq!(
        (refused["allowed"].as_bool(), refused["status"].as_u64()),
        (Some(false), Some(401)),
        "{refused}"
    );
    assert_eq!(refused["code"], 7);
    let unsupported = &r[8];
    assert_eq!(unsupported["status"], 500, "{unsupported}");
    let body: Value = serde_json::from_str(unsupported["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        block(&h, body["correlation_id"].as_str().unwrap())["cause"],
        "route_needs_ext_proc"
    );

    assert_eq!(r[9]["status"], "SERVING");
    assert_eq!(r[10]["status"], 200, "{}", r[10]);
    assert_eq!(r[11]["immediate"]["status"], 403, "{}", r[11]);
    assert_eq!(r[12]["immediate"]["status"], 404, "{}", r[12]);
    let streamed = &r[13];
    assert_eq!(
        (
            streamed["at"].as_str(),
            streamed["immediate"]["status"].as_u64()
        ),
        (Some("request_body"), Some(500)),
        "{streamed}"
    );
    let body: Value =
        serde_json::from_str(streamed["immediate"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "envoy_body_partial", "{body}");

    // One block per exchange and per check (health asks for none), and the chain holds.
    let blocks: Vec<Value> = h
        .blocks()
        .into_iter()
        .filter(|b| b["decision"] != "genesis")
        .collect();
    assert_eq!(
        blocks.len(),
        13,
        "{:#?}",
        blocks
            .iter()
            .map(|b| (&b["route"], &b["decision"], &b["cause"], &b["status"]))
            .collect::<Vec<_>>()
    );
    let db = h.ledger_path().display().to_string();
    let out = crate::cli::palisade(&["verify", "--db", &db], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What each answer added to Envoy's request is measured per message.
    let metrics = h.metrics().await;
    for (route, message) in [
        ("orders", "request_headers"),
        ("orders", "request_body"),
        ("orders", "response_headers"),
        ("orders", "response_body"),
        ("plain", "check"),
    ] {
        let series = format!(
            "palisade_envoy_message_seconds_count{{tenant=\"acme\",route=\"{route}\",message=\"{message}\"}}"
        );
        assert!(metrics.contains(&series), "{series}: {metrics}");
    }
}

const OVERLOAD_ROUTES: &str = r#"
[[route]]
name = "one"
tenant = "acme"
upstream = "up"
path = "/one"
concurrency = 1

[[route]]
name = "office"
tenant = "acme"
upstream = "up"
path = "/office"
allow_ips = ["203.0.113.0/24"]

[[route]]
name = "slow"
tenant = "acme"
upstream = "up"
path = "/loop"
[[route.request]]
module = "@MISBEHAVE"
fuel = 5000000000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_overload_slow_phases_untrusted_addresses_and_bad_headers() {
    let gateway = |overload: &'static str| {
        start_with(move |up, _: &Path| {
            Config::new(up)
                .section(
                    "envoy",
                    &format!("listen = \"127.0.0.1:0\"\nmessage_timeout_ms = 50\n{overload}"),
                )
                .text(OVERLOAD_ROUTES)
        })
    };
    let h = gateway("").await;
    let held = json!({"kind": "ext_proc", "method": "GET", "path": "/one",
                      "while_open": {"kind": "ext_proc", "method": "GET", "path": "/one"}});
    let r = envoy(
        &h,
        json!([
            held,
            {"kind": "ext_proc", "method": "GET", "path": "/loop"},
            // Envoy is not a trusted proxy here: its word on the client is not taken.
            {"kind": "ext_proc", "method": "GET", "path": "/office", "source": "203.0.113.9:5555"},
            // A header that is not HTTP is Envoy's mistake, not a request.
            {"kind": "ext_proc", "method": "GET", "path": "/one", "headers": {"x-bad": "a\nb"}},
        ]),
    );
    // The second request on a route of concurrency 1 gets the gateway's 503, as a
    // client of `palisade serve` would (never a gRPC error that failure_mode_allow
    // could turn into a pass); the first completes.
    let held = &r[0];
    assert_eq!(held["status"], 200, "{held}");
    assert_eq!(held["while_open"]["immediate"]["status"], 503, "{held}");
    let blocks = h.blocks();
    let refused = blocks
        .iter()
        .find(|b| b["cause"] == "route_overloaded")
        .expect("the refusal has its block");
    assert_eq!(refused["decision"], "refused");

    // A policy still running at nine tenths of Envoy's message_timeout: the answer
    // leaves in time, a 504 naming why, and the block says so.
    let slow = &r[1];
    assert_eq!(slow["immediate"]["status"], 504, "{slow}");
    let body: Value = serde_json::from_str(slow["immediate"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "envoy_message_timeout");
    let b = block(&h, body["correlation_id"].as_str().unwrap());
    assert_eq!(b["cause"], "envoy_message_timeout");
    assert_eq!(b["decision"], "failed");
    assert_eq!(r[2]["immediate"]["status"], 403, "{}", r[2]);
    assert_eq!(r[3]["grpc_error"], "INVALID_ARGUMENT", "{}", r[3]);

    // overload = "unavailable": a gRPC error, for Envoy's failure_mode_allow to decide.
    let u = gateway("overload = \"unavailable\"\n").await;
    let r = envoy(
        &u,
        json!([{"kind": "ext_proc", "method": "GET", "path": "/one",
                "while_open": {"kind": "ext_proc", "method": "GET", "path": "/one"}}]),
    );
    assert_eq!(r[0]["status"], 200, "{}", r[0]);
    assert_eq!(r[0]["while_open"]["grpc_error"], "UNAVAILABLE", "{}", r[0]);
    assert!(u.blocks().iter().any(|b| b["cause"] == "route_overloaded"));
}

#[test]
fn a_bad_envoy_section_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[audit]\nsqlite = \"audit.db\"\n\
         [envoy]\nlisten = \"127.0.0.1:0\"\nmessage_timeout_ms = 0\nmax_message_bytes = 10\n",
    )
    .unwrap();
    let out = crate::cli::palisade(&["check-config", "--offline", path.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("palisade.toml:7:1: [envoy]: message_timeout_ms must be 1 .. 60000"),
        "{err}"
    );
    assert!(
        err.contains("palisade.toml:8:1: [envoy]: max_message_bytes must be 1024"),
        "{err}"
    );
}

/// A CA that signs `names`' certificates: PEM files `NAME.pem` and `NAME.key` in `dir`
/// (a SAN of `localhost` on each), and the CA's own as `CA.pem`.
fn pki(dir: &Path, ca: &str, names: &[&str]) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{ca} CA"));
    let key = KeyPair::generate().unwrap();
    std::fs::write(
        dir.join(format!("{ca}.pem")),
        params.self_signed(&key).unwrap().pem(),
    )
    .unwrap();
    let issuer = Issuer::new(params, key);
    for name in names {
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_tls_serves_only_clients_with_a_certificate_from_client_ca() {
    let files = tempfile::tempdir().unwrap();
    let f = files.path();
    // One CA for the listener and Envoy, another for a stranger.
    pki(f, "mesh", &["server", "envoy"]);
    pki(f, "stranger", &["intruder"]);
    let tls = format!(
        "tls = {{ cert = \"{0}/server.pem\", key = \"{0}/server.key\", client_ca = \"{0}/mesh.pem\" }}",
        f.display()
    );
    let h = start_with(|up, _| {
        Config::new(up)
            .section(
                "envoy",
                &format!("listen = \"127.0.0.1:0\"\nmessage_timeout_ms = 5000\n{tls}\n"),
            )
            .route(crate::support::Route::new("open").path("/open"))
    })
    .await;
    let check = json!([{"kind": "ext_authz", "method": "GET", "path": "/open/1"}]);
    let (ca, envoy_pem, envoy_key) = (f.join("mesh.pem"), f.join("envoy.pem"), f.join("envoy.key"));
    let (intruder_pem, intruder_key) = (f.join("intruder.pem"), f.join("intruder.key"));

    // Envoy, with its certificate: served.
    let r = envoy_with(
        &h,
        check.clone(),
        &[
            ("PALISADE_TLS_CA", &ca),
            ("PALISADE_TLS_CERT", &envoy_pem),
            ("PALISADE_TLS_KEY", &envoy_key),
        ],
    );
    assert_eq!(r[0]["allowed"], true, "{r:?}");
    // No client certificate, one from another CA, or plaintext: refused before any
    // request reaches the pipeline.
    let refused: [&[(&str, &Path)]; 3] = [
        &[("PALISADE_TLS_CA", &ca)],
        &[
            ("PALISADE_TLS_CA", &ca),
            ("PALISADE_TLS_CERT", &intruder_pem),
            ("PALISADE_TLS_KEY", &intruder_key),
        ],
        &[],
    ];
    for env in refused {
        let r = envoy_with(&h, check.clone(), env);
        assert_eq!(r[0]["grpc_error"], "UNAVAILABLE", "{env:?}: {r:?}");
    }
    // One block: the check that was served.
    let served = h.blocks().iter().filter(|b| b["route"] == "open").count();
    assert_eq!(served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_listener_whose_tls_files_do_not_load_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    Config::new("127.0.0.1:9".parse().unwrap())
        .section(
            "envoy",
            "listen = \"127.0.0.1:0\"\ntls = { cert = \"missing.pem\", key = \"missing.key\" }\n",
        )
        .write(&path)
        .unwrap();
    let err = match palisade_gateway::Gateway::from_file(&path)
        .unwrap()
        .start()
        .await
    {
        Ok(_) => panic!("started without its certificate"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("missing.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_health_says_not_serving_while_checks_are_answered_for_drain_ms() {
    let h = start_with(|up, _| {
        Config::new(up)
            .section(
                "envoy",
                "listen = \"127.0.0.1:0\"\nmessage_timeout_ms = 5000\ndrain_ms = 5000\n",
            )
            .route(crate::support::Route::new("open").path("/open"))
    })
    .await;
    let (grpc, up) = (h.running.envoy_addr().unwrap(), h.upstream.addr);
    let cases = json!([
        {"kind": "ext_authz", "method": "GET", "path": "/open/1"},
        {"kind": "health", "service": "envoy.service.auth.v3.Authorization"},
    ]);
    let run = |cases: &Value| {
        let cases = cases.clone();
        tokio::task::spawn_blocking(move || client(grpc, up, cases, &[]))
    };
    let before = run(&cases).await.unwrap();
    assert_eq!(before[0]["allowed"], true, "{before:?}");
    assert_eq!(before[1]["status"], "SERVING", "{before:?}");

    let Harness {
        running,
        dir,
        upstream,
    } = h;
    let stopping = tokio::spawn(running.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Draining: health says NOT_SERVING, checks are still answered (on a new connection).
    let during = run(&cases).await.unwrap();
    assert_eq!(during[0]["allowed"], true, "{during:?}");
    assert_eq!(during[1]["status"], "NOT_SERVING", "{during:?}");
    stopping.await.unwrap();
    // Then the listener is closed.
    let after = run(&json!([{"kind": "ext_authz", "method": "GET", "path": "/open/1"}]))
        .await
        .unwrap();
    assert_eq!(after[0]["grpc_error"], "UNAVAILABLE", "{after:?}");
    drop((dir, upstream));
}

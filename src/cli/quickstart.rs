//! `palisade quickstart`: a demo gateway on 127.0.0.1 with everything switched on.
//!
//! It writes `palisade.toml` into `--dir`, starts a demo upstream on loopback, serves
//! the config (Wasm and Lua policies, built-in redaction, the SQLite audit ledger with
//! signed checkpoints, metrics) and prints the curl commands that show each part.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Debug, Args)]
pub(crate) struct QuickstartArgs {
    /// Where the config, audit ledger and checkpoints go.
    #[arg(long, default_value = "target/quickstart")]
    dir: PathBuf,
    /// The gateway's port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The admin (metrics) port (0: any free port).
    #[arg(long, default_value_t = 9090)]
    admin_port: u16,
    /// Where `cargo guests` put the Wasm policies.
    #[arg(long, default_value = "target/policies")]
    policies: PathBuf,
    /// The Lua policies.
    #[arg(long, default_value = "policies/lua")]
    lua: PathBuf,
    #[command(flatten)]
    log: super::log::LogArgs,
}

pub(crate) fn main(args: QuickstartArgs) -> ExitCode {
    args.log.install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        match run(args).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("palisade: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

async fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let wasm = |name: &str| cwd.join(&args.policies).join(format!("{name}.wasm"));
    for name in ["inject-headers", "redact-pii", "block-patterns"] {
        if !wasm(name).is_file() {
            anyhow::bail!(
                "{} is missing: in the Palisade repository run `cargo guests` first; \
                 elsewhere pass --policies DIR, a directory holding inject-headers.wasm, \
                 redact-pii.wasm and block-patterns.wasm (built by `cargo guests`)",
                wasm(name).display()
            );
        }
    }
    let lua = cwd.join(&args.lua).join("reshape-json.lua");
    anyhow::ensure!(
        lua.is_file(),
        "{} is missing: outside the Palisade repository pass --lua DIR, the repository's \
         policies/lua directory (it holds reshape-json.lua)",
        lua.display()
    );
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let key = dir.join("hash.key");
    if !key.exists() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        std::fs::write(&key, hex::encode(bytes))?;
    }

    // A fresh demo API key each run; the file keeps only its hash.
    let keys = dir.join("apikeys.json");
    let demo_key = palisade_gateway::auth::apikey::generate(
        Some("demo".into()),
        Some("quickstart".into()),
        vec!["orders:read".into()],
        Vec::new(),
        None,
    );
    let entry = demo_key.entry.clone();
    palisade_gateway::auth::apikey::update(&keys, |f| {
        f.keys = vec![entry];
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!(e))?;

    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(demo_upstream(upstream));

    let config = dir.join("palisade.toml");
    std::fs::write(
        &config,
        config_text(&args, upstream_addr, &wasm, &lua, &key),
    )?;
    let running = match super::serve::start(&config).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let gw = running.proxy_addr();
    let rel = |p: &Path| p.strip_prefix(&cwd).unwrap_or(p).display().to_string();
    println!(
        "Palisade quickstart: gateway on http://{gw}, demo upstream on http://{upstream_addr}"
    );
    println!(
        "config: {} (edit it and send SIGHUP to reload)\n",
        rel(&config)
    );
    println!(
        "# 1. Lua reshapes the response, Wasm masks card and phone, built-in redaction masks the SSN and hashes the email:"
    );
    println!("curl -s http://{gw}/customers/42\n");
    println!(
        "# 2. A Wasm request policy adds a header; the demo upstream echoes what it received:"
    );
    println!(
        "curl -s -X POST http://{gw}/echo -H 'content-type: application/json' -d '{{\"note\":\"hello\"}}'\n"
    );
    println!(
        "# 3. A Wasm policy blocks an injection attempt before it reaches the upstream (400):"
    );
    println!("curl -s -i -X POST http://{gw}/echo -d \"name=' OR 1=1 --\"\n");
    println!("# 4. Limits: a body over the route's 64 KiB limit gets 413:");
    println!(
        "head -c 100000 /dev/zero | curl -s -i -X POST http://{gw}/echo --data-binary @- | head -1\n"
    );
    println!(
        "# 5. Auth: /orders needs an API key with scope orders:read (401 without; the upstream sees the caller):"
    );
    println!("curl -s -i http://{gw}/orders/7 | head -1");
    println!(
        "curl -s http://{gw}/orders/7 -H 'x-api-key: {}'\n",
        demo_key.key
    );
    if let Some(admin) = running.admin_addr() {
        println!("# 6. Metrics:");
        println!(
            "curl -s http://{admin}/metrics | grep -E '^palisade_(requests|policy_invocations)_total'\n"
        );
    }
    println!("# 7. Every request above is a block in the audit ledger; prove the chain intact:");
    println!("{} verify --config {}\n", invocation(&cwd), rel(&config));
    println!("Ctrl-C stops the gateway.");
    super::serve::run_until_signal(running).await;
    Ok(ExitCode::SUCCESS)
}

fn config_text(
    args: &QuickstartArgs,
    upstream: SocketAddr,
    wasm: &dyn Fn(&str) -> PathBuf,
    lua: &Path,
    key: &Path,
) -> String {
    let q = |p: PathBuf| toml_str(&p.display().to_string());
    format!(
        r#"# Written by `palisade quickstart`. docs/gateway.md explains every key.
[server]
listen = "127.0.0.1:{port}"
admin = "127.0.0.1:{admin}"

[audit]
sqlite = "audit.db"
checkpoint = "checkpoints.jsonl"
checkpoint_interval_ms = 1000

[auth]
api_keys = "apikeys.json"        # `palisade apikey create --config ... --tenant demo` adds keys

[[tenant]]
name = "demo"
# Every route of this tenant must redact these paths, or the config is refused.
mandatory_pii = ["$..ssn"]
hash_key_file = {key}

[[upstream]]
name = "demo-upstream"
url = "http://{upstream}"

[[route]]
name = "customers"
tenant = "demo"
upstream = "demo-upstream"
path = "/customers"
methods = ["GET"]

[[route.response]]
module = {lua}
config = {{ ops = '[{{"op":"drop","path":"/internal"}},{{"op":"rename","from":"/name","to":"/customer_name"}}]' }}

[[route.response]]
module = {redact_pii}
config = {{ detectors = "card,phone" }}

[[route.redact]]
path = "$..ssn"
action = "mask"

[[route.redact]]
path = "$..email"
action = "hash"

[[route]]
name = "orders"
tenant = "demo"
upstream = "demo-upstream"
path = "/orders"
auth = {{ schemes = ["api_key"], scopes = ["orders:read"] }}

[[route.redact]]
path = "$..ssn"
action = "mask"

[[route]]
name = "echo"
tenant = "demo"
upstream = "demo-upstream"
path = "/echo"
max_body_bytes = 65536

[[route.request]]
module = {block}

[[route.request]]
module = {inject}
config = {{ "request.set.x-demo-policy" = "wasm:inject-headers" }}

[[route.redact]]
path = "$..ssn"
action = "mask"
"#,
        port = args.port,
        admin = args.admin_port,
        key = q(key.to_path_buf()),
        lua = q(lua.to_path_buf()),
        redact_pii = q(wasm("redact-pii")),
        block = q(wasm("block-patterns")),
        inject = q(wasm("inject-headers")),
    )
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The demo upstream: a customer record full of PII, and an echo of any other request.
async fn demo_upstream(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let out = if parts.uri.path().starts_with("/customers/") {
                    json!({
                        "id": parts.uri.path().trim_start_matches("/customers/"),
                        "name": "Ada Lovelace",
                        "email": "ada@example.com",
                        "ssn": "123-45-6789",
                        "card": "4111 1111 1111 1111",
                        "notes": "prefers a call on +441632960961",
                        "internal": {"risk_score": 0.12, "segment": "gold"}
                    })
                } else {
                    let headers: serde_json::Map<String, serde_json::Value> = parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                        .collect();
                    json!({
                        "method": parts.method.as_str(),
                        "path": parts.uri.path(),
                        "headers": headers,
                        "body": String::from_utf8_lossy(&body),
                    })
                };
                let mut res = hyper::Response::new(Full::new(Bytes::from(out.to_string())));
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(res)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// How to run this binary again from `cwd`: through cargo when it is this workspace's
/// build, else by its name (an installed `palisade`).
fn invocation(cwd: &Path) -> &'static str {
    let built_here = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .zip(cwd.join("target").canonicalize().ok())
        .is_some_and(|(exe, target)| exe.starts_with(target));
    if built_here {
        "cargo run -q --"
    } else {
        "palisade"
    }
}

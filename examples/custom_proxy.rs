//! A custom reverse proxy in about 60 lines that embeds the Palisade runtime directly:
//! each request runs a Wasm policy in a fresh sandbox, then goes to the upstream.
//!
//! Run (from the repository root), with any HTTP server as the upstream:
//!
//! ```text
//! cargo guests
//! python3 -m http.server 8000 &
//! cargo run --example custom_proxy -- http://127.0.0.1:8000
//! curl -si http://127.0.0.1:3002/                        # proxied (200)
//! curl -si "http://127.0.0.1:3002/?q=%27%20OR%201=1--"   # refused by the policy (400)
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_runtime::{Config, Context, Decision, Engine, InvocationPool, Module, Request};

type Reply = hyper::Response<Full<Bytes>>;

fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    let mut res = hyper::Response::new(Full::new(body.into()));
    *res.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    res
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    policy: Arc<Module>,
    pool: InvocationPool,
    upstream: Arc<str>,
) -> Reply {
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, 1 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes())
    else {
        return reply(413, "body too large");
    };
    let ctx = Context {
        tenant: "demo".into(),
        route: "all".into(),
        ..Context::default()
    };
    let request = Request {
        method: parts.method.to_string(),
        path: parts.uri.path().into(),
        query: parts.uri.query().unwrap_or("").into(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.into())))
            .collect(),
        body,
    };
    let request = match pool
        .run(move || policy.on_request(&ctx, request))
        .await
        .result
    {
        Ok(Decision::Continue(r)) => r,
        Ok(Decision::Respond(own)) => return reply(own.status, own.body),
        Err(e) => return reply(500, format!("policy failed: {}", e.kind())),
    };
    let uri = format!("{upstream}{}?{}", request.path, request.query);
    let mut out = hyper::Request::new(Full::new(request.body));
    *out.uri_mut() = uri.parse().expect("a valid upstream URI");
    *out.method_mut() = parts.method;
    let client = Client::builder(TokioExecutor::new()).build_http();
    match client.request(out).await {
        Ok(res) => {
            let status = res.status().as_u16();
            reply(
                status,
                res.into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default(),
            )
        }
        Err(_) => reply(502, "upstream unavailable"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let upstream: Arc<str> = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:8000".into())
        .into();
    let engine = Engine::new(&Config::new())?;
    let policy = Arc::new(Module::from_file(
        &engine,
        "target/policies/block-patterns.wasm",
    )?);
    let pool = InvocationPool::new(64);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("proxying http://127.0.0.1:3002 -> {upstream}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let (policy, pool, upstream) = (policy.clone(), pool.clone(), upstream.clone());
        let svc = service_fn(move |req| {
            let (policy, pool, upstream) = (policy.clone(), pool.clone(), upstream.clone());
            async move { Ok::<_, Infallible>(handle(req, policy, pool, upstream).await) }
        });
        tokio::spawn(
            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .into_owned(),
        );
    }
}

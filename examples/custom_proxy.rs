//! A custom reverse proxy on Palisade's engine: its own listener and upstream client, and
//! between them, through `PolicyLayer`, the phases `palisade serve` runs (body limits,
//! request and response policies, redaction, audit). Run from the repository root:
//!
//! ```text
//! cargo guests && python3 -m http.server 8000 &
//! cargo run --example custom_proxy -- http://127.0.0.1:8000
//! curl -si http://127.0.0.1:3002/                        # proxied (200)
//! curl -si "http://127.0.0.1:3002/?q=%27%20OR%201=1--"   # refused by the policy (400)
//! palisade verify --db custom-proxy-audit.db             # one block per request
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{Client, ResponseFuture, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::{server::conn::auto, service::TowerToHyperService};
use palisade_gateway::{PolicyLayer, PolicyService};
use palisade_ledger::{Ledger, Options, Target};
use palisade_runtime::{Config, Engine, Policy};
use tower_layer::Layer;

/// The upstream leg: the request as the policies left it goes to `base`.
#[derive(Clone)]
pub(crate) struct Upstream(Client<HttpConnector, Full<Bytes>>, Arc<str>);

impl tower_service::Service<http::Request<Full<Bytes>>> for Upstream {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Full<Bytes>>) -> ResponseFuture {
        let target = req.uri().path_and_query().map_or("/", |t| t.as_str());
        *req.uri_mut() = format!("{}{target}", self.1).parse().expect("a valid URL");
        self.0.request(req)
    }
}

/// `block-patterns` on every request to `base`; one audit block per request.
pub(crate) fn proxy(
    engine: &Engine,
    base: &str,
    ledger: Ledger,
) -> anyhow::Result<PolicyService<Upstream>> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    Ok(PolicyLayer::new("demo", "all")
        .request_policy(
            Policy::from_file(engine, "target/policies/block-patterns.wasm")?,
            &[],
        )
        .audit(Arc::new(ledger))
        .layer(Upstream(client, base.trim_end_matches('/').into())))
}

/// Serves `proxy` (HTTP/1.1 and HTTP/2) on `listener`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    proxy: PolicyService<Upstream>,
) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let service = TowerToHyperService::new(proxy.clone());
        let http = auto::Builder::new(TokioExecutor::new());
        tokio::spawn(
            http.serve_connection(TokioIo::new(tcp), service)
                .into_owned(),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:8000".into());
    let ledger = Ledger::open(
        Target::Sqlite("custom-proxy-audit.db".into()),
        Options::default(),
    )?;
    let proxy = proxy(&Engine::new(&Config::new())?, &base, ledger)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("proxying http://127.0.0.1:3002 -> {base}");
    Ok(serve(listener, proxy).await?)
}

//! Palisade inside Envoy (`[envoy]`, `docs/envoy.md`): a gRPC listener serving
//! `envoy.service.ext_proc.v3.ExternalProcessor` ([`ext_proc`]),
//! `envoy.service.auth.v3.Authorization` ([`ext_authz`]) and `grpc.health.v1.Health`,
//! all with the pipeline `palisade serve` runs: the same routes, tenants, policies,
//! redaction and audit ledger. The types and services are generated from Envoy's own
//! protos (the `envoy-types` crate); none of the wire format is written here.
//!
//! The listener speaks plaintext HTTP/2 (h2c) for the Envoy beside it (the same pod or
//! host, or over the mesh's mTLS), or TLS with `[envoy] tls` ([`tls`]), with client
//! certificates from `client_ca` when Envoy reaches it over a network: whoever reaches
//! it can ask for decisions.

mod ext_authz;
mod ext_proc;
mod headers;
mod tls;

pub use self::tls::Tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// The gRPC metadata key naming the Palisade route on an ext_proc stream, set per route
/// by Envoy's `ExtProcPerRoute.overrides.grpc_initial_metadata`.
pub(crate) const ROUTE_METADATA: &str = "x-palisade-route";

/// The ext_authz `context_extensions` key naming the Palisade route, set per route by
/// Envoy's `ExtAuthzPerRoute.check_settings.context_extensions`.
pub(crate) const ROUTE_EXTENSION: &str = "palisade_route";

/// `[envoy]`: where Envoy reaches Palisade, and how long it waits for each answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gRPC listener (`127.0.0.1:9001`).
    pub listen: SocketAddr,
    /// Envoy's `message_timeout` for ext_proc (200 ms unless set) or `timeout` for
    /// ext_authz: every answer leaves within nine tenths of it, a late phase as 504
    /// `envoy_message_timeout`. 1 ms .. 60 s.
    #[serde(
        default = "d::message_timeout",
        rename = "message_timeout_ms",
        with = "ms"
    )]
    pub message_timeout: Duration,
    /// The largest gRPC message accepted (a buffered body and its headers). 16 MiB unless
    /// set; at most 1 GiB. Keep it above the routes' `max_body_bytes` and
    /// `max_response_bytes`.
    #[serde(default = "d::max_message")]
    pub max_message_bytes: usize,
    /// Concurrent streams (requests) per Envoy connection. 1024 unless set.
    #[serde(default = "d::streams")]
    pub max_concurrent_streams: u32,
    /// What overload (`gateway_overloaded`, `route_overloaded`) answers: `"respond"`
    /// (the default) a 503 to the client, as `palisade serve` does; `"unavailable"` a
    /// gRPC `UNAVAILABLE`, which Envoy's `failure_mode_allow` decides on. Only with
    /// `failure_mode_allow: false`: otherwise a client that fills a route's
    /// `concurrency` gets its requests through without Palisade.
    #[serde(default)]
    pub overload: Overload,
    /// TLS on the listener (`tls = { cert, key, client_ca }`); plaintext without it.
    pub tls: Option<Tls>,
    /// On shutdown, how long health answers `NOT_SERVING` while every service still
    /// serves, so that Envoy's health checks move traffic away before the listener
    /// closes (`drain_ms`; set it above the checks' `interval` x `unhealthy_threshold`).
    /// 0 unless set; at most 300000.
    #[serde(default, rename = "drain_ms", with = "ms")]
    pub drain: Duration,
}

/// `[envoy] overload`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overload {
    /// A 503 with `Retry-After`, as an immediate response (or a denied check).
    #[default]
    Respond,
    /// A gRPC `UNAVAILABLE`.
    Unavailable,
}

mod d {
    use std::time::Duration;
    pub(super) fn message_timeout() -> Duration {
        Duration::from_millis(200)
    }
    pub(super) fn max_message() -> usize {
        16 << 20
    }
    pub(super) fn streams() -> u32 {
        1024
    }
}

mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Config {
    /// Makes the TLS files' relative paths the config file's directory's.
    pub(crate) fn rebase(&mut self, base: &std::path::Path) {
        if let Some(tls) = &mut self.tls {
            tls.rebase(base);
        }
    }

    /// What is wrong with the section: `(key, message)`.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.message_timeout) {
            problems.push((
                "envoy.message_timeout_ms",
                "message_timeout_ms must be 1 .. 60000".to_string(),
            ));
        }
        if !(1024..=1 << 30).contains(&self.max_message_bytes) {
            problems.push((
                "envoy.max_message_bytes",
                "max_message_bytes must be 1024 .. 1073741824".to_string(),
            ));
        }
        if self.drain > Duration::from_secs(300) {
            problems.push(("envoy.drain_ms", "drain_ms must be 0 .. 300000".to_string()));
        }
        if !(1..=100_000).contains(&self.max_concurrent_streams) {
            problems.push((
                "envoy.max_concurrent_streams",
                "max_concurrent_streams must be 1 .. 100000".to_string(),
            ));
        }
        problems
    }
}

/// What the services share.
pub(crate) struct Settings {
    message_timeout: Duration,
    overload: Overload,
    metrics: Arc<Metrics>,
}

impl Settings {
    /// How long the phases answering one message may take: nine tenths of Envoy's
    /// `message_timeout`, so that the answer (or the reason) reaches Envoy before it gives
    /// up.
    fn budget(&self) -> Duration {
        self.message_timeout * 9 / 10
    }

    /// Whether `e` is answered as a gRPC `UNAVAILABLE` rather than to the client.
    fn unavailable(&self, e: &crate::error::Error) -> bool {
        use crate::error::Error;
        self.overload == Overload::Unavailable && matches!(e, Error::Shed | Error::Overloaded)
    }
}

/// Serves ext_proc, ext_authz and health on `listener` until `stop`; health turns
/// `NOT_SERVING` first, and for `drain_ms` everything else goes on, so that Envoy's
/// health checks move traffic away; then the streams in flight finish.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: Config,
    pipeline: Arc<Pipeline>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = Arc::new(Settings {
        message_timeout: config.message_timeout,
        overload: config.overload,
        metrics: pipeline.metrics().clone(),
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExternalProcessorServer<ext_proc::ExtProc>>()
        .await;
    health
        .set_serving::<AuthorizationServer<ext_authz::ExtAuthz>>()
        .await;
    let ext_proc = ExternalProcessorServer::new(ext_proc::ExtProc {
        pipeline: pipeline.clone(),
        settings: settings.clone(),
    })
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);
    let ext_authz = AuthorizationServer::new(ext_authz::ExtAuthz { pipeline, settings })
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let drain = config.drain;
    let shutdown = async move {
        let _ = stop.changed().await;
        health
            .set_not_serving::<ExternalProcessorServer<ext_proc::ExtProc>>()
            .await;
        health
            .set_not_serving::<AuthorizationServer<ext_authz::ExtAuthz>>()
            .await;
        // Still serving (and accepting) while Envoy's health checks see NOT_SERVING.
        tokio::time::sleep(drain).await;
    };
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.max_concurrent_streams))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(ext_proc)
        .add_service(ext_authz);
    let served = match tls {
        Some(acceptor) => {
            router
                .serve_with_incoming_shutdown(tls::incoming(listener, acceptor), shutdown)
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(
                    // Without `TCP_NODELAY` an answer written in pieces waits for Envoy's
                    // delayed ACK: about 40 ms on every message (the `envoy` bench found it).
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "the envoy listener stopped");
    }
}

//! Listeners and connections: HTTP/1.1 and HTTP/2 (h2c, or ALPN over TLS 1.3), the
//! connection-level limits, the admin listener, reload and graceful shutdown.
//!
//! Connection limits, enforced before the pipeline runs, on every listener (proxy,
//! TLS, admin with `/metrics`):
//! - request head larger than `max_header_bytes` or with more than `max_headers` fields:
//!   431 (HTTP/1.1), or the HTTP/2 library's own 431;
//! - first bytes, TLS handshake and first request head within `header_timeout_ms` of
//!   accept, later HTTP/1.1 heads within it of their first byte; idle connections
//!   closed after `idle_timeout_ms`; each response handed to the client by its
//!   deadline (`server/conn.rs`);
//! - connections capped per listener and per peer address, the longest idle ones shed
//!   first (`server/table.rs`); the descriptor limit raised at start and the caps
//!   fitted into it (`server/fdlimit.rs`);
//! - HTTP/2 streams per connection capped at `max_concurrent_streams`; a client that
//!   resets streams faster than they are accepted (rapid reset) gets `GOAWAY`; an idle
//!   peer is pinged and dropped when it does not answer.
//!
//! Every request refused here leaves exactly one block in the audit ledger with its
//! `Refusal` cause (`bad_request`, `header_too_large`, `header_timeout`,
//! `stream_refused`, `too_many_resets`, `connection_shed`); connections that never
//! started a request (silent, idle) close without one.

mod activity;
mod config;
mod conn;
mod fdlimit;
mod h2frames;
mod proxy_protocol;
mod refusal;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use palisade_runtime::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use self::config::Limits;
pub use self::config::{Cidr, Config, Connections, Tls, TrustedProxy};
use self::conn::{App, Listener};
use self::table::Table;
use crate::admin::Admin;
use crate::audit::LedgerInfo;
use crate::config::{self as file_config, File, Invalid};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration has problems (all of them are listed).
    #[error("invalid configuration:\n{0}")]
    Config(#[from] Invalid),
    /// The audit ledger could not be opened.
    #[error("audit ledger: {0}")]
    Ledger(#[from] palisade_ledger::Error),
    /// The policy runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] palisade_runtime::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// An audit export sink could not be set up (its credentials or CA unreadable).
    #[error("audit export: {0}")]
    Export(#[from] crate::export::Error),
}

/// A configured gateway, not yet listening.
pub struct Gateway {
    file: File,
    pipeline: Arc<Pipeline>,
    ledger: LedgerInfo,
    exporters: crate::export::Prepared,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.file.path)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads, checks and builds the configuration at `path`, and opens the audit ledger.
    ///
    /// # Errors
    ///
    /// [`StartError`] naming what is wrong (for a config, every problem).
    pub fn from_file(path: &Path) -> Result<Self, StartError> {
        let file = file_config::load(path)?;
        // Every problem of the file before anything is opened or created.
        let checked = crate::pipeline::Checked::new(&file)?;
        // Precompiled modules: the configured cache, else beside the registry's
        // modules, else beside the config file.
        let cache = match (&file.runtime.cache_dir, &file.registry) {
            (Some(dir), _) => dir.clone(),
            (None, Some(registry)) => registry.artifacts(),
            (None, None) => file.resolve(Path::new(".palisade-cache")),
        };
        let engine = Engine::new(&palisade_runtime::Config::new().cache_dir(cache))?;
        let (ledger, info) = crate::audit::open(&file.audit)?;
        let metrics = Arc::new(Metrics::new());
        let exporters = crate::export::prepare(&file.audit, &metrics)?;
        let pipeline = Pipeline::from_checked(checked, engine, Arc::new(ledger), metrics)?;
        Ok(Gateway {
            file,
            pipeline: Arc::new(pipeline),
            ledger: info,
            exporters,
        })
    }

    /// The pipeline, to embed in another server.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Binds the listeners and starts serving.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound or the TLS files cannot be loaded.
    pub async fn start(self) -> Result<Running, StartError> {
        let server = self.file.server.clone();
        let tls = server
            .tls
            .as_ref()
            .map(|t| {
                tls_acceptor(
                    &t.cert,
                    &t.key,
                    self.pipeline.client_cert_verifier(),
                    &[b"h2", b"http/1.1"],
                )
            })
            .transpose()?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: addr.to_string(),
                    source,
                })
        };
        let listener = bind(server.listen).await?;
        let proxy_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: server.listen.to_string(),
            source,
        })?;
        let admin = match server.admin {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let envoy = match &self.file.envoy {
            Some(e) => {
                let tls = match &e.tls {
                    Some(t) => Some(t.acceptor().map_err(StartError::Tls)?),
                    None => None,
                };
                Some((bind(e.listen).await?, e.clone(), tls))
            }
            None => None,
        };
        let envoy_addr = envoy.as_ref().and_then(|(l, _, _)| l.local_addr().ok());

        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = &server.connections;
        let upstream_fds: u64 = self
            .file
            .upstreams
            .iter()
            .map(|u| u64::from(u.get_ref().max_in_flight) + u.get_ref().max_idle_connections as u64)
            .sum();
        let (proxy_max, admin_max) = fdlimit::fit(
            fdlimit::raise(),
            upstream_fds,
            connections.max_per_listener,
            connections.admin_max_per_listener,
        );
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The head deadline is the connection supervisor's (it also covers the version
        // prefix and the TLS handshake, and is not an idle timeout).
        builder
            .http1()
            .header_read_timeout(None)
            .max_buf_size(server.max_header_bytes)
            .max_headers(server.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(connections.http2_keep_alive_interval))
            .keep_alive_timeout(connections.http2_keep_alive_timeout)
            .max_header_list_size(server.max_header_bytes as u32)
            .max_concurrent_streams(server.max_concurrent_streams)
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(256));
        let limits = |max_per_listener, max_per_peer| Limits {
            header_timeout: server.header_timeout,
            idle_timeout: connections.idle_timeout,
            max_per_listener,
            max_per_peer,
        };
        let grace = server.shutdown_grace;
        let proxy_protocol = server.proxy_protocol;
        let proxy_limits = limits(proxy_max, connections.max_per_peer);
        let proxy = tokio::spawn(accept_loop(
            listener,
            Arc::new(Listener {
                name: "proxy",
                app: App::Proxy(self.pipeline.clone()),
                builder: builder.clone(),
                tls,
                limits: proxy_limits,
                table: Table::new(proxy_limits.max_per_listener, proxy_limits.max_per_peer),
                stop: stop_rx.clone(),
                shutdown_grace: grace,
                proxy_protocol,
            }),
        ));
        let admin_task = admin.map(|l| {
            let admin_limits = limits(admin_max, connections.admin_max_per_peer);
            let handler = Arc::new(Admin {
                pipeline: self.pipeline.clone(),
                schemes: server.admin_auth.clone(),
                ledger: self.ledger.clone(),
            });
            tokio::spawn(accept_loop(
                l,
                Arc::new(Listener {
                    name: "admin",
                    app: App::Admin(handler),
                    builder: builder.clone(),
                    tls: None,
                    limits: admin_limits,
                    table: Table::new(admin_limits.max_per_listener, admin_limits.max_per_peer),
                    stop: stop_rx.clone(),
                    shutdown_grace: grace,
                    proxy_protocol: false,
                }),
            ))
        });
        let envoy_task = envoy.map(|(l, config, tls)| {
            tokio::spawn(crate::envoy::serve(
                l,
                tls,
                config,
                self.pipeline.clone(),
                stop_rx.clone(),
            ))
        });
        if self.pipeline.registry().is_some() {
            tokio::spawn(follow_registry(self.pipeline.clone(), stop_rx));
        }
        let exporters = self.exporters.spawn();
        Ok(Running {
            exporters,
            proxy_addr,
            admin_addr,
            envoy_addr,
            stop: stop_tx,
            proxy,
            admin: admin_task,
            envoy: envoy_task,
            envoy_drain: self.file.envoy.as_ref().map_or(Duration::ZERO, |e| e.drain),
            grace,
            file_path: self.file.path.clone(),
            pipeline: self.pipeline,
        })
    }
}

/// A TLS 1.3 acceptor with the certificate in `cert` and `key`, the client policy of
/// `clients` and the protocols of `alpn`.
pub(crate) fn tls_acceptor(
    cert: &Path,
    key: &Path,
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    alpn: &[&[u8]],
) -> Result<TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_client_cert_verifier(clients)
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until the stop signal, then waits (up to the shutdown grace)
/// for the open ones to finish.
async fn accept_loop(listener: TcpListener, l: Arc<Listener>) {
    let mut stop = l.stop.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(listener = l.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Some(admitted) = conn::admit(&l, peer, tokio::time::Instant::now()) else {
            continue;
        };
        tokio::spawn(conn::serve(l.clone(), tcp, peer, admitted));
    }
    drop(listener);
    // Each connection got the signal too and closes within the grace.
    let deadline = tokio::time::Instant::now() + l.shutdown_grace + Duration::from_secs(1);
    while l.table.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gateways sharing a database see each other's activations: every 2 s the active
/// versions are re-read, and the routes rebuilt when they changed.
async fn follow_registry(pipeline: Arc<Pipeline>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
        let p = pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Some(registry) = p.registry() else { return };
            match registry.poll_active() {
                Ok(changes) if changes.is_empty() => {}
                Ok(changes) => match p.rebuild() {
                    Ok(()) => changes.iter().for_each(|c| c.log_applied()),
                    Err(e) => tracing::warn!(error = %e, "registry change not applied"),
                },
                Err(e) => tracing::warn!(error = %e, "registry not readable"),
            }
        })
        .await;
    }
}

/// A listening gateway.
pub struct Running {
    exporters: crate::export::Exporters,
    proxy_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    envoy_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    proxy: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
    envoy: Option<JoinHandle<()>>,
    envoy_drain: Duration,
    grace: Duration,
    file_path: PathBuf,
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("proxy", &self.proxy_addr)
            .field("admin", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The proxy listener's address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The Envoy (ext_proc, ext_authz) listener's address, with `[envoy]`.
    pub fn envoy_addr(&self) -> Option<SocketAddr> {
        self.envoy_addr
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Re-reads the config file and swaps in its routes ([`Pipeline::reload`]); what
    /// changed but is read only at start is named in the result
    /// ([`crate::config::needs_restart`]).
    /// In-flight requests are not disturbed.
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every problem; the old routes stay in service.
    pub fn reload(&self) -> Result<crate::pipeline::Reloaded, Invalid> {
        let file = file_config::load(&self.file_path)?;
        self.pipeline.reload(&file)
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), then
    /// commits the audit ledger and writes a last checkpoint (and sends the spans still
    /// queued).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.proxy.await;
        if let Some(a) = self.admin {
            let _ = a.await;
        }
        if let Some(e) = self.envoy {
            // Streams in flight get the grace period, as the proxy's requests do, after
            // the drain window.
            let grace = self.envoy_drain + self.grace + Duration::from_secs(1);
            let _ = tokio::time::timeout(grace, e).await;
        }
        let ledger = self.pipeline.ledger().clone();
        let exporters = self.exporters;
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || {
            ledger.close();
            exporters.stop();
            // Last: a collector that does not answer delays only this.
            pipeline.shutdown_traces();
        })
        .await;
    }
}

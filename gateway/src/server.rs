//! Listeners and connections: HTTP/1.1 and HTTP/2 (h2c, or ALPN over TLS 1.3), the
//! connection-level limits, the admin listener, reload and graceful shutdown.
//!
//! Connection limits, enforced before the pipeline runs:
//! - request head larger than `max_header_bytes` or with more than `max_headers` fields:
//!   431 (HTTP/1.1), or a stream reset with the header list limit (HTTP/2);
//! - request head not complete within `header_timeout_ms`: the connection is closed;
//! - HTTP/2 streams per connection capped at `max_concurrent_streams`; a client that
//!   resets streams faster than they are accepted (rapid reset) gets `GOAWAY`.
//!
//! Each of these still leaves a block in the audit ledger (`header_too_large`,
//! `header_timeout`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use palisade_ledger::{Durability, Ledger, Options, Target, checkpoint};
use palisade_runtime::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::{Admin, LedgerInfo};
use crate::auth::ClientCertificate;
use crate::config::{self, File, Invalid};
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
}

/// A configured gateway, not yet listening.
pub struct Gateway {
    file: File,
    pipeline: Arc<Pipeline>,
    ledger: LedgerInfo,
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
        let file = config::load(path)?;
        let mut issues = config::check(&file);
        if let Err(auth) = crate::auth::Authenticator::build(&file) {
            issues.extend(auth.issues);
        }
        if !issues.is_empty() {
            return Err(Invalid { issues }.into());
        }
        // Precompiled modules: the configured cache, else beside the registry's
        // modules, else beside the config file.
        let cache = match (&file.runtime.cache_dir, &file.registry) {
            (Some(dir), _) => file.resolve(dir),
            (None, Some(registry)) => file.resolve(&registry.dir).join("artifacts"),
            (None, None) => file.resolve(Path::new(".palisade-cache")),
        };
        let engine = Engine::new(&palisade_runtime::Config::new().cache_dir(cache))?;
        let (ledger, info) = open_ledger(&file)?;
        let pipeline = Pipeline::new(&file, engine, Arc::new(ledger), Arc::new(Metrics::new()))?;
        Ok(Gateway {
            file,
            pipeline: Arc::new(pipeline),
            ledger: info,
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
                    &self.file.resolve(&t.cert),
                    &self.file.resolve(&t.key),
                    self.pipeline.client_cert_verifier(),
                )
            })
            .transpose()?;
        let bind = |addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let listener = bind(server.listen.clone()).await?;
        let proxy_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: server.listen.clone(),
            source,
        })?;
        let admin = match &server.admin {
            Some(a) => Some(bind(a.clone()).await?),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(server.header_timeout_ms))
            .max_buf_size(server.max_header_bytes)
            .max_headers(server.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(server.max_header_bytes as u32)
            .max_concurrent_streams(server.max_concurrent_streams)
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(256));
        let grace = Duration::from_millis(server.shutdown_grace_ms);
        let proxy = tokio::spawn(accept_loop(
            listener,
            tls,
            builder,
            self.pipeline.clone(),
            stop_rx.clone(),
            grace,
        ));
        let handler = Arc::new(Admin {
            pipeline: self.pipeline.clone(),
            schemes: server.admin_auth.clone(),
            ledger: self.ledger.clone(),
        });
        let admin_task = admin.map(|l| tokio::spawn(admin_loop(l, handler, stop_rx.clone())));
        if self.pipeline.registry().is_some() {
            tokio::spawn(follow_registry(self.pipeline.clone(), stop_rx));
        }
        Ok(Running {
            proxy_addr,
            admin_addr,
            stop: stop_tx,
            proxy,
            admin: admin_task,
            file_path: self.file.path.clone(),
            pipeline: self.pipeline,
        })
    }
}

fn open_ledger(file: &File) -> Result<(Ledger, LedgerInfo), StartError> {
    let a = &file.audit;
    let target = match &a.postgres {
        Some(url) => Target::Postgres(url.clone()),
        None => Target::Sqlite(
            file.resolve(
                a.sqlite
                    .as_deref()
                    .unwrap_or(Path::new("palisade-audit.db")),
            ),
        ),
    };
    let mut info = LedgerInfo {
        target: target.clone(),
        checkpoints: None,
    };
    let checkpoints = match &a.checkpoint {
        None => None,
        Some(cp) => {
            let cp = file.resolve(cp);
            let key_path = a
                .checkpoint_key
                .as_ref()
                .map(|k| file.resolve(k))
                .unwrap_or_else(|| cp.with_file_name("checkpoint.key"));
            if !key_path.exists() {
                checkpoint::generate_key(&key_path)?;
            }
            let key = checkpoint::load_signing_key(&key_path)?;
            info.checkpoints = Some((cp.clone(), checkpoint::public_key_path(&key_path)));
            Some(checkpoint::Signer::new(
                key,
                cp,
                Duration::from_millis(a.checkpoint_interval_ms),
            ))
        }
    };
    let ledger = Ledger::open(
        target,
        Options {
            durability: match a.durability {
                config::Durability::Sync => Durability::Sync,
                config::Durability::Async => Durability::Async,
            },
            checkpoints,
            commit_delay: Duration::from_micros(a.commit_delay_us),
            ..Options::default()
        },
    )?;
    Ok((ledger, info))
}

fn tls_acceptor(
    cert: &Path,
    key: &Path,
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
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
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    pipeline: Arc<Pipeline>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let pipeline = pipeline.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(TokioIo::new(tcp), peer, None, builder, pipeline, watcher).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head.
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| ClientCertificate::new(c.to_vec()));
                            serve(TokioIo::new(stream), peer, cert, builder, pipeline, watcher)
                                .await;
                        }
                        Ok(Err(e)) if is_client_cert_error(&e) => {
                            pipeline
                                .audit_refused(
                                    StatusCode::UNAUTHORIZED,
                                    "client_certificate_rejected",
                                )
                                .await;
                        }
                        _ => {}
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

/// Whether a failed handshake was the client's certificate being refused.
fn is_client_cert_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

async fn serve<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    cert: Option<ClientCertificate>,
    builder: auto::Builder<TokioExecutor>,
    pipeline: Arc<Pipeline>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let p = pipeline.clone();
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let p = p.clone();
        if let Some(c) = &cert {
            req.extensions_mut().insert(c.clone());
        }
        async move { Ok::<_, std::convert::Infallible>(p.handle(req, peer).await) }
    });
    let conn = builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        let cause = e.downcast_ref::<hyper::Error>().and_then(|e| {
            if e.is_parse_too_large() {
                Some((
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "header_too_large",
                ))
            } else if e.is_timeout() {
                Some((StatusCode::REQUEST_TIMEOUT, "header_timeout"))
            } else {
                None
            }
        });
        if let Some((status, cause)) = cause {
            pipeline.audit_refused(status, cause).await;
        }
    }
}

async fn admin_loop(listener: TcpListener, admin: Arc<Admin>, mut stop: watch::Receiver<bool>) {
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
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
                Ok(true) => {
                    if let Err(e) = p.rebuild() {
                        tracing::warn!(error = %e, "registry change not applied");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "registry not readable"),
            }
        })
        .await;
    }
}

/// A listening gateway.
pub struct Running {
    proxy_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    proxy: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
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

    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Re-reads the config file and swaps in its routes (listener, audit and server
    /// settings need a restart). In-flight requests are not disturbed.
    ///
    /// # Errors
    ///
    /// [`Invalid`] with every problem; the old routes stay in service.
    pub fn reload(&self) -> Result<(), Invalid> {
        let file = config::load(&self.file_path)?;
        self.pipeline.reload(&file)
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), then
    /// commits the audit ledger and writes a last checkpoint.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.proxy.await;
        if let Some(a) = self.admin {
            let _ = a.await;
        }
        let ledger = self.pipeline.ledger().clone();
        let _ = tokio::task::spawn_blocking(move || ledger.close()).await;
    }
}

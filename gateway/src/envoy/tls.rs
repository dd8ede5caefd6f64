//! TLS on the Envoy listener (`[envoy] tls`): TLS 1.3, ALPN `h2`, and with `client_ca`
//! only clients holding a certificate that CA issued (Envoy's own) are served.
//!
//! The handshakes run off the accept loop, each within [`HANDSHAKE`] and at most
//! [`HANDSHAKES`] at once, so a client that stalls one holds only its own connection;
//! tonic sees the finished streams.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client may take to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Handshakes in progress at once: past it the listener stops accepting (the kernel's
/// backlog holds the rest) until one ends, so a flood of clients that never finish
/// holds this many sockets for [`HANDSHAKE`], not every descriptor the process has.
const HANDSHAKES: usize = 256;

/// `[envoy] tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The listener's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that issue the clients' certificates: with it, a client
    /// without such a certificate is refused in the handshake. Without it, any client
    /// that reaches the port is served.
    pub client_ca: Option<PathBuf>,
}

impl Tls {
    pub(crate) fn rebase(&mut self, base: &Path) {
        use crate::config::de::rebase;
        self.cert = rebase(base, &self.cert);
        self.key = rebase(base, &self.key);
        if let Some(ca) = &mut self.client_ca {
            *ca = rebase(base, ca);
        }
    }

    /// The acceptor, or what is wrong with the files.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, String> {
        use rustls::server::WebPkiClientVerifier;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let clients = match &self.client_ca {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                {
                    let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no certificate in the file", path.display()));
                }
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::new(rustls::crypto::ring::default_provider()),
                )
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        crate::server::tls_acceptor(&self.cert, &self.key, clients, &[b"h2"])
            .map_err(|e| e.to_string())
    }
}

/// A connection whose handshake finished.
pub(crate) struct Conn {
    stream: TlsStream<TcpStream>,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.get_ref().0.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connections of `listener` whose handshake with `acceptor` finished, until the
/// server drops the stream (it stops accepting when its shutdown, drain included, ends).
/// A failed handshake is logged (at debug: a port scan is not news) and dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                p = handshakes.clone().acquire_owned() => p.expect("never closed"),
                _ = tx.closed() => return,
            };
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(listener = "envoy", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            // Without it every answer waits for Envoy's delayed ACK (see `serve`).
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let shaken = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await;
                drop(permit);
                match shaken {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(Conn { stream })).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(listener = "envoy", %peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(listener = "envoy", %peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

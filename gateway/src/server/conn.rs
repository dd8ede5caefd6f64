//! One client connection, from accept to close, on any listener.
//!
//! A supervisor runs beside hyper's connection and closes it when a deadline passes:
//! - **first request**: the TLS handshake, the protocol's first bytes and the whole
//!   first request head (HTTP/1.1) or HTTP/2 preface and first stream must arrive
//!   within `header_timeout_ms` of accept;
//! - **later HTTP/1.1 heads**: within `header_timeout_ms` of their first byte;
//! - **idle**: with no request in progress, after `idle_timeout_ms` (HTTP/2: `GOAWAY`
//!   first); HTTP/2 also pings an idle peer and drops one that does not answer;
//! - **responses**: each must be fully handed to the client by its deadline (the
//!   route's total timeout; `idle_timeout_ms` for responses of no route). When every
//!   response still in progress is past its deadline, the connection is closed
//!   [`EXPIRED_GRACE`] later, whatever the client reads;
//! - **shed**: closed at once when a newer connection needs its place (see
//!   [`super::table`]).
//!
//! A head that had started (or a stream the HTTP/2 library refused) is audited with
//! its [`Refusal`]; a silent or idle connection closes without a block.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::activity::{Conn, Watched};
use super::config::Limits;
use super::refusal::Refusal;
use super::table::{Admission, Table, Ticket};
use crate::admin::Admin;
use crate::auth::ClientCertificate;
use crate::body::Body;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, ResponseDeadline};

/// How long a connection whose every response is past its deadline gets before it is
/// closed (time for the server to reset those responses itself if the client reads).
pub(crate) const EXPIRED_GRACE: Duration = Duration::from_secs(1);
/// How long a connection asked to close gracefully (idle, `GOAWAY`) gets to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What answers requests on a listener.
#[derive(Clone)]
pub(crate) enum App {
    Proxy(Arc<Pipeline>),
    Admin(Arc<Admin>),
}

impl App {
    fn pipeline(&self) -> &Arc<Pipeline> {
        match self {
            App::Proxy(p) => p,
            App::Admin(a) => &a.pipeline,
        }
    }

    async fn call(
        &self,
        mut req: hyper::Request<Incoming>,
        peer: SocketAddr,
        cert: Option<ClientCertificate>,
    ) -> http::Response<Body> {
        match self {
            App::Proxy(p) => {
                if let Some(c) = cert {
                    req.extensions_mut().insert(c);
                }
                p.handle(req, peer).await
            }
            App::Admin(a) => a.handle(req).await,
        }
    }
}

/// A listener's shared parts.
pub(crate) struct Listener {
    /// `proxy` or `admin`, in metrics.
    pub(crate) name: &'static str,
    pub(crate) app: App,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) limits: Limits,
    pub(crate) table: Arc<Table>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) shutdown_grace: Duration,
    /// Every connection starts with a PROXY protocol v2 header from a trusted proxy.
    pub(crate) proxy_protocol: bool,
}

impl Listener {
    fn metrics(&self) -> &Metrics {
        self.app.pipeline().metrics()
    }

    fn closed(&self, reason: &'static str) {
        self.metrics().connection_closed(self.name, reason);
    }

    fn audit(&self, refusal: Refusal) {
        let pipeline = self.app.pipeline().clone();
        tokio::spawn(async move {
            pipeline
                .audit_refused(refusal.status(), refusal.cause())
                .await
        });
    }
}

/// Admits a connection just accepted (in accept order, so that the longest idle are
/// shed first); `None` when it must be closed at once.
pub(crate) fn admit(
    l: &Listener,
    peer: SocketAddr,
    accepted: Instant,
) -> Option<(Arc<Conn>, Ticket)> {
    let conn = Conn::new(accepted);
    match l.table.admit(peer.ip(), conn.clone()) {
        Admission::Refused => {
            l.closed("refused");
            None
        }
        Admission::Open { ticket, shed } => {
            for _ in 0..shed {
                l.closed("shed");
            }
            l.metrics().connections_open(l.name, l.table.open());
            Some((conn, ticket))
        }
    }
}

/// Serves one admitted connection until it closes.
pub(crate) async fn serve(
    l: Arc<Listener>,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    (conn, ticket): (Arc<Conn>, Ticket),
) {
    let _ = tcp.set_nodelay(true);
    if l.proxy_protocol {
        match proxied(&l, &mut tcp, peer, &conn).await {
            Ok(client) => peer = client,
            Err(reason) => {
                drop(ticket);
                l.closed(reason);
                l.metrics().connections_open(l.name, l.table.open());
                return;
            }
        }
    }
    let reason = match l.tls.clone() {
        None => supervise(&l, Watched::new(tcp, conn.clone()), peer, None, conn).await,
        Some(acceptor) => handshake(&l, acceptor, tcp, peer, conn).await,
    };
    drop(ticket);
    l.closed(reason);
    l.metrics().connections_open(l.name, l.table.open());
}

/// The client's address from the PROXY protocol header a trusted proxy sends first,
/// within the first request's deadline ([`super::proxy_protocol`]).
async fn proxied(
    l: &Listener,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    conn: &Conn,
) -> Result<SocketAddr, &'static str> {
    if !l.app.pipeline().trusts_proxy(peer.ip()) {
        return Err("proxy_untrusted");
    }
    let deadline = conn.state().idle_since + l.limits.header_timeout;
    match tokio::time::timeout_at(deadline, super::proxy_protocol::read(tcp, peer)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(_)) | Err(_) => Err("proxy_header"),
    }
}

/// TLS first, within the first request's deadline; then [`supervise`].
async fn handshake(
    l: &Listener,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
) -> &'static str {
    let deadline = conn.state().idle_since + l.limits.header_timeout;
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
    let shed = async {
        while !conn.is_shed() {
            conn.wake.notified().await;
        }
    };
    tokio::select! {
        r = handshake => match r {
            Ok(Ok(stream)) => {
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| ClientCertificate::new(c.to_vec()));
                supervise(l, Watched::new(stream, conn.clone()), peer, cert, conn).await
            }
            Ok(Err(e)) if is_client_cert_error(&e) => {
                l.app
                    .pipeline()
                    .audit_refused(http::StatusCode::UNAUTHORIZED, "client_certificate_rejected")
                    .await;
                "tls_handshake"
            }
            Ok(Err(_)) => "tls_handshake",
            Err(_) => "header_timeout",
        },
        () = shed => "shed",
    }
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

/// Why the supervisor ended a connection.
enum Close {
    /// Drop it now.
    Now(&'static str),
    /// Ask hyper to finish (`GOAWAY`, no keep-alive), then drop it after a grace.
    Gracefully(&'static str, Duration),
}

async fn supervise<I>(
    l: &Listener,
    io: Watched<I>,
    peer: SocketAddr,
    cert: Option<ClientCertificate>,
    conn: Arc<Conn>,
) -> &'static str
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle_timeout = l.limits.idle_timeout;
    let (app, c) = (l.app.clone(), conn.clone());
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let flight = c.begin();
        let (app, cert) = (app.clone(), cert.clone());
        async move {
            let res = app.call(req, peer, cert).await;
            let (parts, body) = res.into_parts();
            let deadline = parts
                .extensions
                .get::<ResponseDeadline>()
                .map_or_else(|| Instant::now() + idle_timeout, |d| d.0);
            Ok::<_, std::convert::Infallible>(http::Response::from_parts(
                parts,
                flight.respond(body, deadline),
            ))
        }
    });
    let connection = l
        .builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    tokio::pin!(connection);
    let mut stop = l.stop.clone();
    let mut closing: Option<(Instant, &'static str)> = None;
    let mut all_expired_since: Option<Instant> = None;
    let reason = loop {
        let state = conn.state();
        for r in conn.refusals(state.active == 0) {
            l.audit(r);
        }
        let now = Instant::now();
        let (expired, next_response) = conn.expire(now);
        let mut wake = next_response;
        let mut soonest = |at: Instant| wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
        let mut decision = None;
        // HTTP/1.1 takes a buffered body in whole and may still be writing it.
        let unsent_expired = match state.unsent {
            Some(deadline) if state.active == 0 => {
                if deadline > now {
                    soonest(deadline);
                }
                deadline <= now
            }
            _ => false,
        };
        let all_expired = (expired > 0 && state.active <= expired) || unsent_expired;
        if !all_expired {
            all_expired_since = None;
        }
        if conn.is_shed() {
            if !state.http2 && state.active == 0 && state.head_started.is_some() {
                l.audit(Refusal::Shed);
            }
            decision = Some(Close::Now("shed"));
        } else if all_expired {
            let since = *all_expired_since.get_or_insert(now);
            if now >= since + EXPIRED_GRACE {
                decision = Some(Close::Now("response_deadline"));
            }
            soonest(since + EXPIRED_GRACE);
        } else if state.active == 0 && state.unsent.is_none() && closing.is_none() {
            let (deadline, refusal, why) = if state.requests == 0 {
                // Before any request, `idle_since` is the accept time.
                let refusal = (state.read > 0).then_some(Refusal::HeaderTimeout);
                let why = if state.read > 0 {
                    "header_timeout"
                } else {
                    "silent"
                };
                (state.idle_since + l.limits.header_timeout, refusal, why)
            } else if let (false, Some(at)) = (state.http2, state.head_started) {
                (
                    at + l.limits.header_timeout,
                    Some(Refusal::HeaderTimeout),
                    "header_timeout",
                )
            } else {
                (state.idle_since + idle_timeout, None, "idle")
            };
            if now >= deadline {
                if let Some(r) = refusal {
                    l.audit(r);
                }
                decision = Some(if why == "idle" {
                    Close::Gracefully("idle", CLOSE_GRACE)
                } else {
                    Close::Now(why)
                });
            }
            soonest(deadline);
        }
        if expired > 0 && closing.is_none() && decision.is_none() {
            // No new streams on a connection whose client stopped reading.
            decision = Some(Close::Gracefully("response_deadline", Duration::MAX));
        }
        match decision {
            Some(Close::Now(why)) => break why,
            Some(Close::Gracefully(why, grace)) => {
                connection.as_mut().graceful_shutdown();
                closing = Some((now.checked_add(grace).unwrap_or(far_future()), why));
            }
            None => {}
        }
        if let Some((at, why)) = closing {
            if now >= at {
                break why;
            }
            soonest(at);
        }
        let sleep = tokio::time::sleep_until(wake.unwrap_or_else(far_future));
        tokio::select! {
            r = connection.as_mut() => {
                let state = conn.state();
                if let (Err(e), false) = (&r, state.http2)
                    && let Some(refusal) =
                        e.downcast_ref::<hyper::Error>().and_then(Refusal::of_http1)
                {
                    l.audit(refusal);
                }
                break closing.map_or("client", |(_, why)| why);
            }
            () = conn.wake.notified() => {}
            () = sleep => {}
            _ = stop.changed(), if !matches!(closing, Some((_, "shutdown"))) => {
                connection.as_mut().graceful_shutdown();
                closing = Some((Instant::now() + l.shutdown_grace, "shutdown"));
            }
        }
    };
    for r in conn.refusals(true) {
        l.audit(r);
    }
    reason
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

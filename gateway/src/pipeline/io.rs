//! Reading bodies under limits, converting messages, and talking to the upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use palisade_runtime::Response;

use crate::body::{Body, BoxError, full};
use crate::error::Error;
use crate::resilience::UpstreamSlot;

/// An HTTP client for one upstream.
pub(crate) type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a body read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    TooLarge,
    Timeout,
    Broken,
}

/// Reads a whole body, refusing it as soon as it passes `limit` bytes (a declared
/// length over the limit is refused before reading anything) and when it has not
/// arrived by `timeout`. Never buffers more than `limit` bytes.
pub(crate) async fn read_body<B>(
    mut body: B,
    limit: u64,
    timeout: Duration,
) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit {
        return Err(ReadError::TooLarge);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(ReadError::Broken),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if (buf.len() + data.len()) as u64 > limit {
                        return Err(ReadError::TooLarge);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Headers that describe one hop, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those named by `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Headers as the policy contract carries them (names lowercase; a value that is not
/// UTF-8 is dropped rather than altered).
pub(crate) fn to_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Policy headers back to a map. The runtime has already refused invalid names and
/// values, and more headers than its cap (far below what a `HeaderMap` holds), from
/// guests; anything else invalid, or past the map's capacity, is dropped (never a panic).
pub(crate) fn to_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::try_with_capacity(pairs.len()).unwrap_or_default();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) && map.try_append(n, v).is_err()
        {
            break;
        }
    }
    map
}

/// A policy response as an HTTP response.
pub(crate) fn to_http(res: Response) -> http::Response<Body> {
    let mut headers = to_map(&res.headers);
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let mut out = http::Response::new(full(res.body));
    *out.status_mut() =
        http::StatusCode::from_u16(res.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers;
    out
}

/// When a response must be fully handed to the client: the route's total deadline (a
/// response extension the server enforces on the client's connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseDeadline(pub(crate) tokio::time::Instant);

/// Streams an upstream response through untouched (no policy reads it), holding
/// `slot` of the upstream's in-flight cap until the body ends, and cutting the body at
/// `deadline` (the route's total timeout).
///
/// The cut does not wait for the client: if nobody polls the body by then (a client
/// that stopped reading, an HTTP/2 stream without window), a watchdog drops the
/// upstream body (closing that upstream connection) and frees the slot at the
/// deadline; the next poll, if any, ends the body with [`Error::UpstreamDeadline`].
pub(crate) fn stream_response(
    res: http::Response<hyper::body::Incoming>,
    slot: UpstreamSlot,
    deadline: tokio::time::Instant,
) -> http::Response<Body> {
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.extensions.insert(ResponseDeadline(deadline));
    let upstream = Arc::new(Mutex::new(Some((body, slot))));
    let weak = Arc::downgrade(&upstream);
    let watchdog = tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        if let Some(upstream) = weak.upgrade() {
            let cut = upstream.lock().expect("upstream body lock").take();
            if cut.is_some() {
                tracing::debug!("upstream body released at the route's total timeout");
            }
        }
    });
    let bounded = Bounded {
        upstream,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        watchdog,
    };
    http::Response::from_parts(parts, bounded.boxed())
}

type Held = Arc<Mutex<Option<(hyper::body::Incoming, UpstreamSlot)>>>;

/// An upstream body cut at a deadline, holding its upstream slot.
struct Bounded {
    /// Taken by the watchdog at the deadline.
    upstream: Held,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Drop for Bounded {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl hyper::body::Body for Bounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = &mut *self;
        {
            let mut held = this.upstream.lock().expect("upstream body lock");
            let Some((inner, _)) = held.as_mut() else {
                return Poll::Ready(Some(Err(Error::UpstreamDeadline.into())));
            };
            if let Poll::Ready(frame) = std::pin::Pin::new(inner).poll_frame(cx) {
                if frame.is_none() {
                    // Done: the upstream connection goes back to its pool now.
                    held.take();
                }
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!("upstream body cut at the route's total timeout");
                this.upstream.lock().expect("upstream body lock").take();
                Poll::Ready(Some(Err(Error::UpstreamDeadline.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.upstream
            .lock()
            .expect("upstream body lock")
            .as_ref()
            .is_some_and(|(inner, _)| inner.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.upstream
            .lock()
            .expect("upstream body lock")
            .as_ref()
            .map_or_else(hyper::body::SizeHint::default, |(inner, _)| {
                inner.size_hint()
            })
    }
}

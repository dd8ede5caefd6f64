//! One connection's observable state, shared by its I/O, its requests and the task
//! that supervises it: bytes read, requests in progress, response deadlines, and what
//! the HTTP/2 library refused on its own.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::h2frames::Frames;
use crate::body::{Body, BoxError};

/// Not a time: no byte since the mark.
const NONE: u64 = u64::MAX;

/// What the supervisor, the I/O wrapper and the requests of one connection share.
#[derive(Debug)]
pub(crate) struct Conn {
    started: Instant,
    /// Bytes read from the client (after TLS).
    read: AtomicU64,
    /// Requests whose response has not been sent (or dropped) yet.
    active: AtomicUsize,
    /// Requests received.
    requests: AtomicU64,
    /// Ms since `started` when `active` last dropped to 0 (0 before any request).
    idle_since: AtomicU64,
    /// Ms since `started` of the first byte read since the last request ended (or
    /// since the start), or [`NONE`].
    first_after_mark: AtomicU64,
    /// Responses being sent: id, deadline, expired.
    responses: Mutex<Vec<(u64, Instant, bool)>>,
    next_response: AtomicU64,
    frames: Mutex<Frames>,
    /// HTTP/1: the frames need not be followed (spares the lock on every read).
    http1: AtomicBool,
    shed: AtomicBool,
    /// The last write to the client did not go through (its buffers are full).
    blocked: AtomicBool,
    /// Ms since `started` of the deadline of the last response whose body the server
    /// has taken in full ([`NONE`]: none yet). HTTP/1.1 may still be writing it.
    last_deadline: AtomicU64,
    /// Wakes the supervisor: a state change worth re-checking its deadlines for.
    pub(crate) wake: Notify,
}

/// A snapshot for the supervisor's decisions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    pub(crate) read: u64,
    pub(crate) active: usize,
    pub(crate) requests: u64,
    pub(crate) idle_since: Instant,
    /// A byte arrived since the connection went idle, at this time.
    pub(crate) head_started: Option<Instant>,
    pub(crate) http2: bool,
    /// No request in progress, but the last response is still stuck in the server's
    /// write buffer (the client stopped reading); its deadline.
    pub(crate) unsent: Option<Instant>,
}

impl Conn {
    pub(crate) fn new(started: Instant) -> Arc<Self> {
        Arc::new(Conn {
            started,
            read: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_after_mark: AtomicU64::new(NONE),
            responses: Mutex::new(Vec::new()),
            next_response: AtomicU64::new(0),
            frames: Mutex::new(Frames::default()),
            http1: AtomicBool::new(false),
            shed: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            last_deadline: AtomicU64::new(NONE),
            wake: Notify::new(),
        })
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.started + std::time::Duration::from_millis(ms)
    }

    pub(crate) fn state(&self) -> State {
        let first = self.first_after_mark.load(Ordering::Acquire);
        State {
            read: self.read.load(Ordering::Acquire),
            active: self.active.load(Ordering::Acquire),
            requests: self.requests.load(Ordering::Acquire),
            idle_since: self.at(self.idle_since.load(Ordering::Acquire)),
            head_started: (first != NONE).then(|| self.at(first)),
            http2: self.frames.lock().expect("frames lock").is_http2(),
            unsent: {
                let last = self.last_deadline.load(Ordering::Acquire);
                (self.blocked.load(Ordering::Acquire) && last != NONE).then(|| self.at(last))
            },
        }
    }

    /// When the connection went idle, if it is (for shedding: oldest first).
    pub(crate) fn idle_for_shedding(&self) -> Option<Instant> {
        (self.active.load(Ordering::Acquire) == 0)
            .then(|| self.at(self.idle_since.load(Ordering::Acquire)))
    }

    /// Asks the supervisor to close the connection now.
    pub(crate) fn shed(&self) {
        self.shed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(crate) fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Acquire)
    }

    fn on_read(&self, bytes: &[u8]) {
        self.read.fetch_add(bytes.len() as u64, Ordering::AcqRel);
        if self
            .first_after_mark
            .compare_exchange(NONE, self.ms(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.notify_one();
        }
        if !self.http1.load(Ordering::Acquire) {
            let mut frames = self.frames.lock().expect("frames lock");
            frames.on_read(bytes);
            if frames.is_http1() {
                self.http1.store(true, Ordering::Release);
            }
        }
    }

    fn on_write_blocked(&self, blocked: bool) {
        if self.blocked.swap(blocked, Ordering::AcqRel) != blocked && blocked {
            self.wake.notify_one();
        }
    }

    fn on_write(&self, bytes: &[u8]) {
        if !self.http1.load(Ordering::Acquire) {
            self.frames.lock().expect("frames lock").on_write(bytes);
        }
    }

    /// Refusals of the HTTP/2 library to audit now (see [`Frames::settle`]).
    pub(crate) fn refusals(&self, quiet: bool) -> Vec<super::refusal::Refusal> {
        let delivered = self.requests.load(Ordering::Acquire);
        self.frames
            .lock()
            .expect("frames lock")
            .settle(delivered, quiet)
    }

    /// A request arrived: the connection is busy until its response is sent.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
        InFlight { conn: self.clone() }
    }

    /// Marks newly passed response deadlines as expired. Returns how many responses
    /// are expired in all, and the next deadline still ahead.
    pub(crate) fn expire(&self, now: Instant) -> (usize, Option<Instant>) {
        let mut responses = self.responses.lock().expect("responses lock");
        let mut expired = 0;
        let mut next: Option<Instant> = None;
        for (_, deadline, gone) in responses.iter_mut() {
            if *deadline <= now {
                *gone = true;
            }
            if *gone {
                expired += 1;
            } else {
                next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
            }
        }
        (expired, next)
    }
}

/// A request in progress; when dropped, the connection may go idle.
#[derive(Debug)]
pub(crate) struct InFlight {
    conn: Arc<Conn>,
}

impl InFlight {
    /// The service answered with `body`, which must be sent by `deadline`.
    pub(crate) fn respond(self, body: Body, deadline: Instant) -> Tracked {
        let id = self.conn.next_response.fetch_add(1, Ordering::AcqRel);
        let deadline_ms = deadline
            .saturating_duration_since(self.conn.started)
            .as_millis() as u64;
        self.conn
            .responses
            .lock()
            .expect("responses lock")
            .push((id, deadline, false));
        self.conn.wake.notify_one();
        Tracked {
            inner: body,
            id,
            deadline_ms,
            flight: self,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle time and the head mark first, then the count the supervisor reads
        // them by (they mean nothing while requests are still in progress).
        self.conn
            .idle_since
            .store(self.conn.ms(), Ordering::Release);
        self.conn.first_after_mark.store(NONE, Ordering::Release);
        self.conn.active.fetch_sub(1, Ordering::AcqRel);
        self.conn.wake.notify_one();
    }
}

/// A response body being sent; it keeps its request in flight until hyper drops it.
#[derive(Debug)]
pub(crate) struct Tracked {
    inner: Body,
    id: u64,
    deadline_ms: u64,
    flight: InFlight,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.flight
            .conn
            .responses
            .lock()
            .expect("responses lock")
            .retain(|(id, _, _)| *id != self.id);
        // Taken in full is not sent: HTTP/1.1 may still hold it in its write buffer.
        self.flight
            .conn
            .last_deadline
            .store(self.deadline_ms, Ordering::Release);
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's stream, reporting what passes through it to its [`Conn`].
#[derive(Debug)]
pub(crate) struct Watched<I> {
    inner: I,
    conn: Arc<Conn>,
}

impl<I> Watched<I> {
    pub(crate) fn new(inner: I, conn: Arc<Conn>) -> Self {
        Watched { inner, conn }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.conn.on_write_blocked(polled.is_pending());
        if let Poll::Ready(Ok(n)) = polled {
            self.conn.on_write(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.conn.on_write_blocked(polled.is_pending());
        if let Poll::Ready(Ok(mut n)) = polled {
            for b in bufs {
                if n == 0 {
                    break;
                }
                let take = n.min(b.len());
                self.conn.on_write(&b[..take]);
                n -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! Requests the connection layer refuses before the pipeline sees them. Each is one
//! audit block (decision `refused`) with one status and one cause; nothing of the
//! request's bytes is recorded.

use http::StatusCode;

/// Why the connection layer refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// HTTP/1.1: the parser refused the head (request line, header bytes, two
    /// `Content-Length`s, `Transfer-Encoding` with `Content-Length`, ...); HTTP/2: a
    /// stream reset for a malformed request, or a connection closed with a protocol
    /// error. 400 `bad_request`.
    BadRequest,
    /// The head was larger than `max_header_bytes` or had more than `max_headers`
    /// fields. 431 `header_too_large`.
    HeaderTooLarge,
    /// A head started but was not complete within `header_timeout_ms`. 408
    /// `header_timeout`.
    HeaderTimeout,
    /// HTTP/2: a stream refused (`REFUSED_STREAM`), e.g. beyond
    /// `max_concurrent_streams`. 503 `stream_refused`.
    StreamRefused,
    /// HTTP/2: the connection was closed with `ENHANCE_YOUR_CALM` (rapid reset, too
    /// many errors). 429 `too_many_resets`.
    TooManyResets,
    /// A connection with a head in progress was closed to make room under the
    /// connection caps. 503 `connection_shed`.
    Shed,
}

impl Refusal {
    /// The status the client got (or would have got).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::StreamRefused | Refusal::Shed => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManyResets => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The audit cause and metrics label.
    pub(crate) fn cause(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::StreamRefused => "stream_refused",
            Refusal::TooManyResets => "too_many_resets",
            Refusal::Shed => "connection_shed",
        }
    }

    /// The refusal behind an HTTP/1.1 connection error, if it was one (a client that
    /// went away or an I/O error is not).
    pub(crate) fn of_http1(e: &hyper::Error) -> Option<Self> {
        if e.is_parse_too_large() {
            Some(Refusal::HeaderTooLarge)
        } else if e.is_parse() {
            Some(Refusal::BadRequest)
        } else if e.is_timeout() {
            Some(Refusal::HeaderTimeout)
        } else {
            None
        }
    }

    /// The refusal an HTTP/2 `RST_STREAM` sent before any response head means, by its
    /// error code (RFC 9113 §7); `NO_ERROR` and `CANCEL` are not refusals.
    pub(crate) fn of_h2_reset(code: u32) -> Option<Self> {
        match code {
            0x0 | 0x8 => None,
            0x7 => Some(Refusal::StreamRefused),
            0xb => Some(Refusal::TooManyResets),
            _ => Some(Refusal::BadRequest),
        }
    }

    /// The refusal an HTTP/2 `GOAWAY` with this error code means.
    pub(crate) fn of_h2_goaway(code: u32) -> Option<Self> {
        match code {
            0x0 => None,
            0xb => Some(Refusal::TooManyResets),
            _ => Some(Refusal::BadRequest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_one_status_and_cause() {
        let all = [
            Refusal::BadRequest,
            Refusal::HeaderTooLarge,
            Refusal::HeaderTimeout,
            Refusal::StreamRefused,
            Refusal::TooManyResets,
            Refusal::Shed,
        ];
        let causes: std::collections::HashSet<_> = all.iter().map(|r| r.cause()).collect();
        assert_eq!(causes.len(), all.len());
        assert_eq!(Refusal::of_h2_reset(0x1), Some(Refusal::BadRequest));
        assert_eq!(Refusal::of_h2_reset(0x8), None);
        assert_eq!(Refusal::of_h2_goaway(0x0), None);
        assert_eq!(Refusal::of_h2_goaway(0xb), Some(Refusal::TooManyResets));
    }
}

//! What the HTTP/2 library refuses without telling hyper: streams it resets for a
//! malformed request (or answers with its own 431) never reach the service, so the
//! connection reads the frame headers going both ways (never a payload beyond an error
//! code) and counts them.
//!
//! A stream the client opened that the server resets (or answers with a bare 431)
//! before any response head of the service is a refusal. When the client sent only
//! its header block, the stream cannot have reached the service (the library hands
//! over every stream whose headers it accepts, and resets a delivered one only for
//! what the client sent after them), so it is counted at once. When the client also
//! sent body frames, the stream may have been delivered and reset later; those are
//! settled by counting: see [`Frames::settle`].

use std::collections::BTreeMap;

use super::refusal::Refusal;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Client streams followed at once; beyond, the oldest are forgotten.
const MAX_OPEN: usize = 4096;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;

/// A frame header and the first bytes of its payload.
#[derive(Debug, Default, Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    len: usize,
    first: [u8; 8],
}

impl Frame {
    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.first[at],
            self.first[at + 1],
            self.first[at + 2],
            self.first[at + 3],
        ])
    }
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
struct Parser {
    head: [u8; 9],
    have: usize,
    left: usize,
    got: usize,
    frame: Frame,
}

impl Parser {
    fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(&Frame)) {
        while !bytes.is_empty() {
            if self.have < 9 {
                let n = (9 - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == 9 {
                    let h = self.head;
                    self.frame = Frame {
                        len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
                        kind: h[3],
                        flags: h[4],
                        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                        first: [0; 8],
                    };
                    self.left = self.frame.len;
                    self.got = 0;
                    if self.left == 0 {
                        each(&self.frame);
                        self.have = 0;
                    }
                }
                continue;
            }
            let n = self.left.min(bytes.len());
            let keep = n.min(8 - self.got.min(8));
            self.frame.first[self.got..self.got + keep].copy_from_slice(&bytes[..keep]);
            self.got += keep;
            self.left -= n;
            bytes = &bytes[n..];
            if self.left == 0 {
                each(&self.frame);
                self.have = 0;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Comparing the first bytes read with the preface; this many matched so far.
    Unknown(usize),
    Http1,
    Http2,
}

/// A client stream without a response head yet.
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    /// The client sent frames after its header block (a body, trailers).
    bodied: bool,
}

/// One connection's frame bookkeeping.
#[derive(Debug)]
pub(crate) struct Frames {
    protocol: Protocol,
    read: Parser,
    write: Parser,
    open: BTreeMap<u32, Open>,
    max_client_stream: u32,
    /// Refusals certain to be ones, not yet audited.
    certain: Vec<Refusal>,
    /// Streams with a body reset before a response head (delivered or not).
    bodied_resets: u64,
    /// Client resets of streams without a response head.
    client_resets: u64,
    /// Streams the service answered with a response head on the wire.
    answered: u64,
    /// Bodied resets already audited as refusals.
    bodied_audited: u64,
    goaway: bool,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            protocol: Protocol::Unknown(0),
            read: Parser::default(),
            write: Parser::default(),
            open: BTreeMap::new(),
            max_client_stream: 0,
            certain: Vec::new(),
            bodied_resets: 0,
            client_resets: 0,
            answered: 0,
            bodied_audited: 0,
            goaway: false,
        }
    }
}

impl Frames {
    /// Bytes the client sent.
    pub(crate) fn on_read(&mut self, mut bytes: &[u8]) {
        if let Protocol::Unknown(matched) = self.protocol {
            let n = (PREFACE.len() - matched).min(bytes.len());
            if bytes[..n] != PREFACE[matched..matched + n] {
                self.protocol = Protocol::Http1;
                return;
            }
            self.protocol = if matched + n == PREFACE.len() {
                Protocol::Http2
            } else {
                Protocol::Unknown(matched + n)
            };
            bytes = &bytes[n..];
        }
        if self.protocol != Protocol::Http2 {
            return;
        }
        let Frames {
            read,
            open,
            max_client_stream,
            client_resets,
            ..
        } = self;
        read.feed(bytes, |f| match f.kind {
            HEADERS if f.stream > *max_client_stream && f.stream % 2 == 1 => {
                *max_client_stream = f.stream;
                open.insert(f.stream, Open::default());
                if open.len() > MAX_OPEN {
                    open.pop_first();
                }
            }
            HEADERS | DATA => {
                if let Some(o) = open.get_mut(&f.stream) {
                    o.bodied = true;
                }
            }
            RST_STREAM if open.remove(&f.stream).is_some() => *client_resets += 1,
            _ => {}
        });
    }

    /// Bytes the server sent.
    pub(crate) fn on_write(&mut self, bytes: &[u8]) {
        if self.protocol != Protocol::Http2 {
            return;
        }
        let Frames {
            write,
            open,
            certain,
            bodied_resets,
            answered,
            goaway,
            ..
        } = self;
        write.feed(bytes, |f| match f.kind {
            // The library's own answer to an oversized header list is a bare 431 that
            // ends the stream; the service's heads are never that small (the pipeline
            // always sends `x-correlation-id`).
            HEADERS if open.remove(&f.stream).is_some() => {
                if f.flags & END_STREAM != 0 && f.len <= 8 {
                    certain.push(Refusal::HeaderTooLarge);
                } else {
                    *answered += 1;
                }
            }
            RST_STREAM if f.len >= 4 => {
                let Some(o) = open.remove(&f.stream) else {
                    return;
                };
                match Refusal::of_h2_reset(f.word(0)) {
                    Some(Refusal::BadRequest) if o.bodied => *bodied_resets += 1,
                    Some(r) => certain.push(r),
                    None => {}
                }
            }
            GOAWAY if f.len >= 8 && !*goaway => {
                if let Some(r) = Refusal::of_h2_goaway(f.word(4)) {
                    *goaway = true;
                    certain.push(r);
                }
            }
            _ => {}
        });
    }

    /// Whether the client spoke HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        self.protocol == Protocol::Http2
    }

    /// Whether the client spoke HTTP/1 (nothing more to follow).
    pub(crate) fn is_http1(&self) -> bool {
        self.protocol == Protocol::Http1
    }

    /// The refusals to audit now. `delivered` is how many requests the service got on
    /// this connection; `quiet` says none is in progress (every stream the library
    /// accepted has reached the service, and every answer has been handed over).
    ///
    /// A bodied stream reset before its response head was either never delivered (a
    /// refusal) or delivered and then reset by the library. Delivered streams that got
    /// no response head on the wire were reset by the client or by the library. So,
    /// once quiet, the refused ones number
    /// `bodied_resets - (delivered - answered - client_resets)`. An answer still queued
    /// makes the estimate low, never high; it is corrected when the head is written.
    pub(crate) fn settle(&mut self, delivered: u64, quiet: bool) -> Vec<Refusal> {
        let mut out = std::mem::take(&mut self.certain);
        if quiet {
            let delivered_resets = delivered
                .saturating_sub(self.answered)
                .saturating_sub(self.client_resets);
            let refused = self.bodied_resets.saturating_sub(delivered_resets);
            while self.bodied_audited < refused {
                self.bodied_audited += 1;
                out.push(Refusal::BadRequest);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn client(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn a_reset_of_a_header_only_stream_is_a_refusal_at_once() {
        let mut w = Frames::default();
        // Byte by byte: the parser must not care how the bytes are split.
        for b in client(&[frame(HEADERS, 0x5, 1, &[0x82; 20])]) {
            w.on_read(&[b]);
        }
        assert!(w.is_http2());
        w.on_write(&frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
        assert_eq!(w.settle(0, false), [Refusal::BadRequest]);
        // A response head then a reset is not a refusal.
        w.on_read(&frame(HEADERS, 0x5, 3, &[0x82; 20]));
        w.on_write(&frame(HEADERS, 0x4, 3, &[0x88; 40]));
        w.on_write(&frame(RST_STREAM, 0, 3, &2u32.to_be_bytes()));
        assert!(w.settle(0, true).is_empty());
    }

    #[test]
    fn bodied_resets_are_settled_by_counting_answered_streams() {
        let mut w = Frames::default();
        w.on_read(&client(&[
            frame(HEADERS, 0x4, 1, &[0x82; 20]),
            frame(DATA, 0x1, 1, b"hello"),
            frame(HEADERS, 0x4, 3, &[0x82; 20]),
            frame(DATA, 0x1, 3, b"hello"),
        ]));
        w.on_write(&frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
        w.on_write(&frame(RST_STREAM, 0, 3, &1u32.to_be_bytes()));
        assert!(
            w.settle(0, false).is_empty(),
            "not before the connection is quiet"
        );
        // One of the two reached the service (and got no answer on the wire).
        assert_eq!(w.settle(1, true), [Refusal::BadRequest]);
        assert!(w.settle(1, true).is_empty(), "each counted once");
        // An answered stream and a client reset do not move the count.
        w.on_read(&frame(HEADERS, 0x5, 5, &[0x82; 20]));
        w.on_read(&frame(HEADERS, 0x5, 7, &[0x82; 20]));
        w.on_write(&frame(HEADERS, 0x4, 5, &[0x88; 40]));
        w.on_read(&frame(RST_STREAM, 0, 7, &8u32.to_be_bytes()));
        assert!(w.settle(3, true).is_empty());
    }

    #[test]
    fn a_bare_431_refused_stream_and_goaway_are_refusals_http1_is_ignored() {
        let mut w = Frames::default();
        w.on_read(&client(&[
            frame(HEADERS, 0x5, 1, &[0x82; 20]),
            frame(HEADERS, 0x5, 3, &[0x82; 20]),
        ]));
        w.on_write(&frame(HEADERS, 0x5, 1, &[0x48, 0x82, 0x10, 0x1f]));
        w.on_write(&frame(RST_STREAM, 0, 3, &7u32.to_be_bytes()));
        let mut goaway = 1u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&0xbu32.to_be_bytes());
        w.on_write(&frame(GOAWAY, 0, 0, &goaway));
        assert_eq!(
            w.settle(0, true),
            [
                Refusal::HeaderTooLarge,
                Refusal::StreamRefused,
                Refusal::TooManyResets
            ]
        );
        let mut h1 = Frames::default();
        h1.on_read(b"PUT / HTTP/1.1\r\n\r\n");
        h1.on_write(&frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
        assert!(!h1.is_http2());
        assert!(h1.settle(0, true).is_empty());
    }
}

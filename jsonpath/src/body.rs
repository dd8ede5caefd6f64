//! Reading a body the way its recipient will, before redacting it.
//!
//! A redactor that matches the raw bytes misses what a client decodes: UTF-16 text (an SSN
//! with a NUL between every digit), JSON escapes (`536\u002d22\u002d8145`), one JSON
//! document per line. [`decode`] reads the body per its `Content-Type` (media type and
//! charset) into a [`Document`]; what it cannot read unambiguously is [`Unreadable`], and
//! the caller fails closed. [`Decoded::encode`] writes an edited document back in the
//! body's own encoding.
//!
//! | body | read as |
//! | --- | --- |
//! | valid JSON (UTF-8, or UTF-16 by BOM or charset) | [`Document::Json`] |
//! | `application/x-ndjson`, `application/jsonl`, or several lines that each parse | [`Document::Lines`] |
//! | declared JSON, or starting with `{`/`[`/`"`, that does not parse (too deep, broken) | [`Unreadable::BrokenJson`] |
//! | text with `\uXXXX`, `\u{..}`, `\xXX` escapes or `&#` character references | [`Unreadable::Escaped`] |
//! | other text (UTF-8, US-ASCII, UTF-16) without control bytes | [`Document::Text`] |
//! | another charset, invalid encoding, NUL or other control bytes | [`Unreadable::Charset`] / [`Unreadable::NotText`] |

use serde_json::Value;

/// A body read for redaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// One JSON document.
    Json(Value),
    /// One JSON document per line (NDJSON / JSON Lines).
    Lines(Vec<Value>),
    /// Plain text.
    Text(String),
}

/// Why a body cannot be read unambiguously: redact nothing, fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// A charset other than UTF-8, US-ASCII or UTF-16.
    Charset,
    /// Invalid in its encoding, or NUL or other control bytes in text.
    NotText,
    /// Declared or shaped as JSON, but it does not parse (deeper than the parser's limit,
    /// or broken).
    BrokenJson,
    /// Text with escape sequences a reader could decode into what the rules would match.
    Escaped,
}

impl Unreadable {
    /// A stable name for error causes.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::Charset => "charset",
            Unreadable::NotText => "not_text",
            Unreadable::BrokenJson => "broken_json",
            Unreadable::Escaped => "escaped_text",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8 { bom: bool },
    Utf16 { little: bool, bom: bool },
}

/// A decoded body and how to write it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// What the body holds.
    pub document: Document,
    encoding: Encoding,
    trailing_newline: bool,
}

/// The media type (lowercase, without parameters) and charset of a `Content-Type` value.
fn content_type(value: Option<&str>) -> (String, Option<String>) {
    let Some(value) = value else {
        return (String::new(), None);
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    (media, charset)
}

fn is_json_media(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

fn is_lines_media(media: &str) -> bool {
    matches!(
        media,
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/json-seq"
    )
}

/// Reads `bytes` per `content_type` (a `Content-Type` header value, if any).
///
/// # Errors
///
/// [`Unreadable`]: the body must not pass unredacted.
pub fn decode(bytes: &[u8], content_type_value: Option<&str>) -> Result<Decoded, Unreadable> {
    let (media, charset) = content_type(content_type_value);
    // A UTF-16 byte-order mark counts only where the body is declared text (or UTF-16):
    // `FF FE 31 32 ...` sent as bytes is not text, whatever a sniffer would make of it.
    let textual = media.starts_with("text/")
        || is_json_media(&media)
        || is_lines_media(&media)
        || charset.as_deref().is_some_and(|c| c.starts_with("utf-16"));
    let (encoding, rest) = match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => (Encoding::Utf8 { bom: true }, rest),
        [0xFF, 0xFE, rest @ ..] if textual => (
            Encoding::Utf16 {
                little: true,
                bom: true,
            },
            rest,
        ),
        [0xFE, 0xFF, rest @ ..] if textual => (
            Encoding::Utf16 {
                little: false,
                bom: true,
            },
            rest,
        ),
        _ => match charset.as_deref() {
            None | Some("utf-8" | "utf8" | "us-ascii" | "ascii") => {
                (Encoding::Utf8 { bom: false }, bytes)
            }
            Some("utf-16le") => (
                Encoding::Utf16 {
                    little: true,
                    bom: false,
                },
                bytes,
            ),
            Some("utf-16be") => (
                Encoding::Utf16 {
                    little: false,
                    bom: false,
                },
                bytes,
            ),
            // `utf-16` without a BOM: RFC 2781 says big-endian, browsers and .NET say
            // little-endian. Two readings: refused.
            Some("utf-16") => return Err(Unreadable::Charset),
            Some(_) => return Err(Unreadable::Charset),
        },
    };
    let text = match encoding {
        Encoding::Utf8 { .. } => {
            // The common case, parsed straight from the bytes.
            if let Ok(doc) = serde_json::from_slice::<Value>(rest) {
                return Ok(Decoded {
                    document: Document::Json(doc),
                    encoding,
                    trailing_newline: false,
                });
            }
            std::str::from_utf8(rest)
                .map_err(|_| Unreadable::NotText)?
                .to_string()
        }
        Encoding::Utf16 { little, .. } => {
            if rest.len() % 2 != 0 {
                return Err(Unreadable::NotText);
            }
            let units = rest.chunks_exact(2).map(|c| {
                if little {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            });
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| Unreadable::NotText)?
        }
    };
    if text
        .chars()
        .any(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{feff}')
    {
        return Err(Unreadable::NotText);
    }
    let trailing_newline = text.ends_with('\n');
    let document = read_text(&text, &media)?;
    Ok(Decoded {
        document,
        encoding,
        trailing_newline,
    })
}

fn read_text(text: &str, media: &str) -> Result<Document, Unreadable> {
    if let Ok(doc) = serde_json::from_str::<Value>(text) {
        return Ok(Document::Json(doc));
    }
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.trim_matches(|c| c == '\r' || c == '\u{1e}'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let parsed: Option<Vec<Value>> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let first = text.trim_start().chars().next();
    match parsed {
        Some(docs) if !docs.is_empty() && (lines.len() > 1 || is_lines_media(media)) => {
            return Ok(Document::Lines(docs));
        }
        _ => {}
    }
    if is_json_media(media) || is_lines_media(media) || matches!(first, Some('{' | '[' | '"')) {
        return Err(Unreadable::BrokenJson);
    }
    if has_escapes(text) {
        return Err(Unreadable::Escaped);
    }
    Ok(Document::Text(text.to_string()))
}

/// `\uXXXX`, `\u{...}`, `\xXX` (JSON, JavaScript, Python) or `&#` character references
/// (HTML, XML): escapes a reader would decode.
fn has_escapes(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(2).enumerate().any(|(i, w)| {
        let hex = |n: usize| {
            b.get(i + 2..i + 2 + n)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        };
        match w {
            [b'\\', b'u'] => hex(4) || b.get(i + 2) == Some(&b'{'),
            [b'\\', b'x'] => hex(2),
            [b'&', b'#'] => b
                .get(i + 2)
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'x' | b'X')),
            _ => false,
        }
    })
}

impl Decoded {
    /// Edits the document: `json` on the JSON document or on each JSON line (its paths
    /// prefixed `$[line]`), `text` on text (`Some` when it changed it). Returns the new body
    /// and the paths edited (`$` for text). JSON is always written back as parsed, so what
    /// was checked is what leaves, even when the bytes said more (the first of two
    /// duplicate keys, which the parser drops); text only when it changed.
    pub fn edit(
        mut self,
        mut json: impl FnMut(&mut Value) -> Vec<String>,
        text: impl FnOnce(&str) -> Option<String>,
    ) -> (Option<Vec<u8>>, Vec<String>) {
        let mut paths = Vec::new();
        let document = match std::mem::replace(&mut self.document, Document::Lines(Vec::new())) {
            Document::Json(mut doc) => {
                paths = json(&mut doc);
                Document::Json(doc)
            }
            Document::Lines(mut docs) => {
                for (i, doc) in docs.iter_mut().enumerate() {
                    paths.extend(json(doc).into_iter().map(|p| format!("$[{i}]{}", &p[1..])));
                }
                Document::Lines(docs)
            }
            Document::Text(t) => match text(&t) {
                Some(changed) => {
                    paths.push("$".to_string());
                    Document::Text(changed)
                }
                None => return (None, paths),
            },
        };
        (Some(self.encode(&document)), paths)
    }

    /// Whether the body was UTF-16: the same bytes read one byte per character (as a
    /// client that ignores the charset would) are then a second reading to check.
    pub fn is_utf16(&self) -> bool {
        matches!(self.encoding, Encoding::Utf16 { .. })
    }

    /// `document` (this body's, edited) written back in the body's own encoding.
    pub fn encode(&self, document: &Document) -> Vec<u8> {
        let text = match document {
            Document::Json(doc) => serde_json::to_string(doc).expect("a Value serializes"),
            Document::Lines(docs) => {
                let mut out = docs
                    .iter()
                    .map(|d| serde_json::to_string(d).expect("a Value serializes"))
                    .collect::<Vec<_>>()
                    .join("\n");
                if self.trailing_newline {
                    out.push('\n');
                }
                out
            }
            Document::Text(t) => t.clone(),
        };
        match self.encoding {
            // The common case keeps the serializer's buffer: no copy of the body.
            Encoding::Utf8 { bom: false } => text.into_bytes(),
            Encoding::Utf8 { bom: true } => {
                let mut out = Vec::with_capacity(text.len() + 3);
                out.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
                out.extend_from_slice(text.as_bytes());
                out
            }
            Encoding::Utf16 { little, bom } => {
                let mut out = Vec::with_capacity(text.len() * 2 + 2);
                let mut push = |u: u16| {
                    out.extend_from_slice(&if little {
                        u.to_le_bytes()
                    } else {
                        u.to_be_bytes()
                    })
                };
                if bom {
                    push(0xFEFF);
                }
                text.encode_utf16().for_each(&mut push);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str, little: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| {
                if little {
                    u.to_le_bytes()
                } else {
                    u.to_be_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn json_lines_and_utf16_are_read_as_their_reader_reads_them() {
        let d = decode(br#"{"ssn":"536\u002d22\u002d8145"}"#, None).unwrap();
        assert_eq!(
            d.document,
            Document::Json(serde_json::json!({"ssn": "536-22-8145"}))
        );
        let d = decode(b"{\"a\":1}\n{\"b\":\"x\"}\n", Some("text/plain")).unwrap();
        assert!(matches!(&d.document, Document::Lines(l) if l.len() == 2));
        assert_eq!(d.encode(&d.document), b"{\"a\":1}\n{\"b\":\"x\"}\n");
        let body = utf16("my ssn is 536-22-8145", true);
        let d = decode(&body, Some("text/plain; charset=UTF-16LE")).unwrap();
        assert_eq!(d.document, Document::Text("my ssn is 536-22-8145".into()));
        assert_eq!(d.encode(&d.document), body);
        let mut bom = vec![0xFE, 0xFF];
        bom.extend(utf16("{\"ssn\":\"536-22-8145\"}", false));
        let d = decode(&bom, Some("application/json")).unwrap();
        assert!(matches!(d.document, Document::Json(_)));
        assert_eq!(&d.encode(&d.document)[..2], &[0xFE, 0xFF]);
    }

    #[test]
    fn what_cannot_be_read_unambiguously_is_refused() {
        // UTF-16 without a BOM or a charset: NUL bytes.
        assert_eq!(
            decode(&utf16("536-22-8145", true), None),
            Err(Unreadable::NotText)
        );
        assert_eq!(
            decode(b"536\\u002d22\\u002d8145", None),
            Err(Unreadable::Escaped)
        );
        assert_eq!(
            decode(b"ada\\x40example.com", None),
            Err(Unreadable::Escaped)
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(decode(deep.as_bytes(), None), Err(Unreadable::BrokenJson));
        assert_eq!(
            decode(b"not json", Some("application/json")),
            Err(Unreadable::BrokenJson)
        );
        assert_eq!(
            decode(b"x", Some("text/plain; charset=latin1")),
            Err(Unreadable::Charset)
        );
        assert_eq!(decode(&[0xff, 0x41], None), Err(Unreadable::NotText));
        // A BOM on a body not declared text is not taken as one.
        assert_eq!(
            decode(&[0xff, 0xfe, b'1', b'2'], Some("application/octet-stream")),
            Err(Unreadable::NotText)
        );
        assert_eq!(
            decode(b"plain text 536-22-8145", Some("text/plain"))
                .unwrap()
                .document,
            Document::Text("plain text 536-22-8145".into())
        );
    }
}

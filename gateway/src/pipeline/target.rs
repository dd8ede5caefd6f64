//! The request target: the one path the gateway routes on, shows to policies and forwards,
//! and the checks on what a policy may put there.
//!
//! A caller's path is normalized before routing (RFC 3986: percent-decoding of unreserved
//! characters, upper-case escapes, dot-segment removal), and paths an upstream could read
//! differently from the gateway are refused: encoded slashes, backslashes (raw or encoded),
//! encoded dots, `;` (path parameters, which Java servers strip before they route, so
//! `/admin;x/users` would reach `/admin/users` past the `/admin` route), escapes of bytes
//! that are never UTF-8 (overlong `%C0%AE`) or of `%` itself (`%252e`), NUL and other
//! control bytes. Runs of `/` are merged into one. A policy's path must already be in that
//! normal form, so it cannot steer the request elsewhere after routing.

use std::fmt;

/// Why a path or query is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not origin-form (does not start with `/`, or has a scheme or authority).
    NotOriginForm,
    /// An encoded `/` or `\`, or a raw `\`: upstreams disagree on what they separate.
    EncodedSeparator,
    /// An encoded `.` inside a `.`/`..` segment.
    EncodedDotSegment,
    /// A `;` (path parameters), a double-encoded escape (`%25XX`) or an escape of a byte
    /// that never occurs in UTF-8 (`%C0`, `%C1`, `%F5`-`%FF`).
    Ambiguous,
    /// A control byte, space, `#`, a non-ASCII byte or a malformed `%` escape.
    BadByte,
    /// Not in normal form where it is required (a policy's path): dot segments, `//`,
    /// escapes of unreserved characters.
    NotNormal,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::NotOriginForm => "the path is not origin-form",
            Refused::EncodedSeparator => "the path has an encoded slash or a backslash",
            Refused::EncodedDotSegment => "the path has an encoded dot segment",
            Refused::BadByte => "the path or query has a byte that is not allowed there",
            Refused::NotNormal => "the path is not in normal form (dot segments, `//`, escapes)",
            Refused::Ambiguous => {
                "the path has `;`, a double-encoded escape or an escape that is not UTF-8"
            }
        })
    }
}

/// RFC 3986 `unreserved`: the only escapes decoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes allowed raw in a path (RFC 3986 `pchar` and `/`, but not `;`; `%` is checked
/// separately).
fn path_byte(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,=:@/".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A caller's path in normal form, or why it is refused.
pub(crate) fn normalize(path: &str) -> Result<String, Refused> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(Refused::NotOriginForm);
    }
    // Pass 1: decode unreserved escapes, upper-case the others, refuse what is ambiguous.
    let mut decoded = String::with_capacity(path.len());
    // Per byte of `decoded`: whether it came from an escape (to spot `%2e%2e`).
    let mut escaped = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Refused::BadByte);
            };
            let v = h << 4 | l;
            match v {
                b'/' | b'\\' => return Err(Refused::EncodedSeparator),
                0..=0x1f | 0x7f => return Err(Refused::BadByte),
                0xc0 | 0xc1 | 0xf5..=0xff => return Err(Refused::Ambiguous),
                b'%' if raw.get(i + 3).copied().and_then(hex).is_some()
                    && raw.get(i + 4).copied().and_then(hex).is_some() =>
                {
                    return Err(Refused::Ambiguous);
                }
                _ if unreserved(v) => {
                    decoded.push(v as char);
                    escaped.push(true);
                }
                _ => {
                    decoded.push_str(&format!("%{v:02X}"));
                    escaped.extend([false; 3]);
                }
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err(Refused::EncodedSeparator);
        }
        if b == b';' {
            return Err(Refused::Ambiguous);
        }
        if b == b'/' && decoded.ends_with('/') {
            i += 1; // `//` is one separator, as most servers read it
            continue;
        }
        if !path_byte(b) {
            return Err(Refused::BadByte);
        }
        decoded.push(b as char);
        escaped.push(false);
        i += 1;
    }
    if !decoded.contains("/.") {
        return Ok(decoded); // no dot segment: the common case
    }
    // Pass 2: dot segments. A segment of dots that came from escapes is refused; plain
    // ones are resolved.
    let mut start = 0;
    for segment in decoded.split('/') {
        let end = start + segment.len();
        if matches!(segment, "." | "..") && escaped[start..end].iter().any(|&e| e) {
            return Err(Refused::EncodedDotSegment);
        }
        start = end + 1;
    }
    Ok(remove_dot_segments(&decoded))
}

/// RFC 3986 section 5.2.4 for an absolute path: `.` dropped, `..` removes the segment
/// before it (never above the root).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Checks a path a policy returned: it must be what [`normalize`] would give back, so a
/// policy can change the path within the route's upstream but never its authority.
pub(crate) fn check_policy_path(path: &str) -> Result<(), Refused> {
    let normal = normalize(path)?;
    if normal != path {
        return Err(Refused::NotNormal);
    }
    Ok(())
}

/// Checks a query a policy returned: printable ASCII without `#` (what a request line can
/// carry; the caller's own query passes unchanged, escapes and brackets included).
pub(crate) fn check_query(query: &str) -> Result<(), Refused> {
    if query
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'#')
    {
        Ok(())
    } else {
        Err(Refused::BadByte)
    }
}

/// Checks a method a policy returned: an HTTP token.
pub(crate) fn check_method(method: &str) -> bool {
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_and_unreserved_escapes_decoded() {
        for (input, normal) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/pub/../priv/secret", "/priv/secret"),
            ("/pub/./x", "/pub/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%7Euser/%41", "/~user/A"),
            ("/a%2cb", "/a%2Cb"),
            ("/a//b", "/a/b"),
            ("//a///b/", "/a/b/"),
        ] {
            assert_eq!(normalize(input).as_deref(), Ok(normal), "{input}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (input, why) in [
            ("/pub/%2e%2e/priv", Refused::EncodedDotSegment),
            ("/pub/.%2E/priv", Refused::EncodedDotSegment),
            ("/pub/%2e/priv", Refused::EncodedDotSegment),
            ("/pub/..;/priv", Refused::Ambiguous),
            ("/pub/..;x=1/priv", Refused::Ambiguous),
            ("/api/admin;x/users", Refused::Ambiguous),
            ("/%C0%AE%C0%AE/x", Refused::Ambiguous),
            ("/%252e%252e/x", Refused::Ambiguous),
            ("/pub/..%2fpriv", Refused::EncodedSeparator),
            ("/pub/..%2Fpriv", Refused::EncodedSeparator),
            ("/pub%5c..%5cpriv", Refused::EncodedSeparator),
            ("/pub\\..\\priv", Refused::EncodedSeparator),
            ("/a%00b", Refused::BadByte),
            ("/a%0d%0ab", Refused::BadByte),
            ("/a b", Refused::BadByte),
            ("/a#b", Refused::BadByte),
            ("/a%zz", Refused::BadByte),
            ("/a%2", Refused::BadByte),
            ("/caf\u{e9}", Refused::BadByte),
            ("@127.0.0.1:9999/x", Refused::NotOriginForm),
            ("7/x", Refused::NotOriginForm),
            ("http://evil/x", Refused::NotOriginForm),
            ("", Refused::NotOriginForm),
        ] {
            assert_eq!(normalize(input), Err(why), "{input}");
        }
    }

    #[test]
    fn a_policy_path_must_already_be_normal() {
        assert_eq!(check_policy_path("/ok/x"), Ok(()));
        assert_eq!(check_policy_path("/a/../b"), Err(Refused::NotNormal));
        assert_eq!(check_policy_path("/%41"), Err(Refused::NotNormal));
        assert_eq!(
            check_policy_path("@127.0.0.1:9999/x"),
            Err(Refused::NotOriginForm)
        );
        assert_eq!(
            check_policy_path("//evil.example/x"),
            Err(Refused::NotNormal)
        );
        assert_eq!(check_policy_path("/x\r\nHost: evil"), Err(Refused::BadByte));
    }

    #[test]
    fn queries_and_methods_are_checked() {
        assert_eq!(check_query("a=1&b=%20x&c=/?d&ids[]=1&q={|}&p=%zz"), Ok(()));
        assert_eq!(check_query("a=1#frag"), Err(Refused::BadByte));
        assert_eq!(check_query("a=1 2"), Err(Refused::BadByte));
        assert_eq!(check_query("a=\u{e9}"), Err(Refused::BadByte));
        assert!(check_method("GET") && check_method("PURGE") && check_method(&"X".repeat(40)));
        assert!(!check_method("GET /x HTTP/1.1") && !check_method("") && !check_method("G\nT"));
    }
}

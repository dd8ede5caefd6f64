//! Edits the values RFC 9535 JSONPaths select, in place.
//!
//! A [`Selection`] is one or more JSONPaths, parsed by `serde_json_path`.
//! [`Selection::edit`] calls a function on every selected value, deepest and last first
//! (reverse document order), and reports each edited value's normalized path (RFC 9535
//! §2.7). That order is what makes in-place edits safe: removing an array element never
//! shifts an element still to be visited, and a value's selected descendants are edited
//! before the value itself. A value selected twice (by two paths, or by one path through
//! two routes) is edited once. The root is never selected: a rule redacts values inside a
//! document, it does not replace the document.
//!
//! Paths made of names, indices and wildcards, as child or descendant segments
//! (`$.user.ssn`, `$..email`, `$.items[*]['card','cvv']`, `$..[0]`, `$.a[-1]`), are
//! evaluated by one walk over the document that tracks every path's progress at once: no
//! located query, no JSON pointers, no path string unless a value is selected. Anything
//! else (filters, slices) goes through `serde_json_path`'s located query. Both give the
//! same values in the same order; a test compares them.
//!
//! Apart from those choices, every RFC 9535 query selects what the RFC says, with its five
//! filter functions: `length()`, `count()` and `value()` are `serde_json_path`'s, `match()`
//! and `search()` this crate's (`iregexp`, with the default `iregexp` feature; without it,
//! paths using them are refused). Their patterns are I-Regexps (RFC 9485; `^`
//! and `$` are assertions, as in RFC 9485 §5's mappings and the suite below); a string that
//! is not one, or exceeds the bounds, makes them false. The bounds: 1,024 characters,
//! repetition counts up to 1,000, groups 32 deep, a compiled program of 256 KiB and a
//! lazy-DFA cache of 512 KiB. Each thread keeps what it compiled (the last 32 patterns
//! written in paths and the last 8 read from documents, per function), so a pattern is
//! compiled once however many values it is tried on. A document can supply patterns too
//! (`$[?match(@.a, @.b)]`): in one evaluation of a selection, those compile at most 8 times
//! and match at most 2^24 bytes times the pattern's weight (about a tenth of a second in a
//! release build); beyond that they are false.
//!
//! The JSONPath Compliance Test Suite runs with the tests (`tests/cts.rs`, suite commit
//! `7be7c1f`): of its 703 cases, 679 pass as written and 24 differ only by the design
//! choices above, each listed in the test: 14 only in the order of the nodes, 9 because a
//! node is selected twice (2 of them in order too), 1 because it selects the root.
//!
//! ```
//! use palisade_jsonpath::{Outcome, Selection};
//! use serde_json::{Value, json};
//!
//! let selection = Selection::parse(&["$..ssn", "$.cards[*].cvv"]).unwrap();
//! let mut doc = json!({"user": {"ssn": "123-45-6789"}, "cards": [{"cvv": 123}]});
//! let paths = selection.edit(&mut doc, &mut |value| {
//!     *value = Value::String("[REDACTED]".into());
//!     Outcome::Keep
//! });
//! assert_eq!(doc, json!({"user": {"ssn": "[REDACTED]"}, "cards": [{"cvv": "[REDACTED]"}]}));
//! assert_eq!(paths, ["$['user']['ssn']", "$['cards'][0]['cvv']"]);
//! ```

pub mod body;
#[cfg(feature = "iregexp")]
pub mod iregexp;

use std::fmt::Write as _;

use serde_json::Value;
use serde_json_path::{JsonPath, PathElement};

/// What happens to a selected value once the edit function has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The value stays where it is (the function may have changed it in place).
    Keep,
    /// The value is removed from its parent object or array.
    Remove,
}

/// A path that is not valid RFC 9535 JSONPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath {
    /// The position of the path in the list given to [`Selection::parse`].
    pub index: usize,
    /// `serde_json_path`'s description of the error.
    pub message: String,
}

impl std::fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "path {}: {}", self.index, self.message)
    }
}

impl std::error::Error for InvalidPath {}

/// One or more compiled JSONPaths whose selected values can be edited in place.
#[derive(Debug, Clone)]
pub struct Selection {
    paths: Vec<JsonPath>,
    /// Set when every path is simple enough for the single walk.
    walk: Option<Walk>,
}

impl Selection {
    /// Parses `paths` (their union is selected).
    ///
    /// # Errors
    ///
    /// [`InvalidPath`] for the first path that is not valid RFC 9535 JSONPath.
    pub fn parse<S: AsRef<str>>(paths: &[S]) -> Result<Self, InvalidPath> {
        let parsed = paths
            .iter()
            .enumerate()
            .map(|(index, p)| {
                JsonPath::parse(p.as_ref()).map_err(|e| InvalidPath {
                    index,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let walk = Walk::new(paths.iter().map(AsRef::as_ref).zip(&parsed));
        Ok(Selection {
            paths: parsed,
            walk,
        })
    }

    /// Whether the single walk evaluates this selection (for tests and benches).
    #[doc(hidden)]
    pub fn is_single_walk(&self) -> bool {
        self.walk.is_some()
    }

    /// The same selection evaluated only by the located query (for tests and benches).
    #[doc(hidden)]
    pub fn without_single_walk(mut self) -> Self {
        self.walk = None;
        self
    }

    /// Calls `edit` on every selected value in reverse document order; returns the
    /// normalized paths of the values it was called on, in that order.
    pub fn edit<F>(&self, doc: &mut Value, edit: &mut F) -> Vec<String>
    where
        F: FnMut(&mut Value) -> Outcome,
    {
        self.edit_at(doc, &mut |value, _| edit(value))
    }

    /// As [`Selection::edit`], and `edit` is also given the value's normalized path.
    pub fn edit_at<F>(&self, doc: &mut Value, edit: &mut F) -> Vec<String>
    where
        F: FnMut(&mut Value, &str) -> Outcome,
    {
        let mut found = Vec::new();
        match &self.walk {
            Some(walk) => walk.visit(doc, walk.start, None, edit, &mut found),
            None => self.edit_located(doc, edit, &mut found),
        }
        found
    }

    /// Whether any path selects a value of `doc` other than the root (nothing is copied).
    pub fn selects_any(&self, doc: &Value) -> bool {
        budgeted(|| {
            self.paths.iter().any(|p| {
                p.query_located(doc)
                    .iter()
                    .any(|node| node.location().iter().next().is_some())
            })
        })
    }

    /// The normalized paths of the values selected in `doc`, in reverse document order.
    pub fn locate(&self, doc: &Value) -> Vec<String> {
        let mut copy = doc.clone();
        self.edit(&mut copy, &mut |_| Outcome::Keep)
    }

    fn edit_located<F>(&self, doc: &mut Value, edit: &mut F, found: &mut Vec<String>)
    where
        F: FnMut(&mut Value, &str) -> Outcome,
    {
        let mut located: Vec<Vec<Key>> = Vec::new();
        budgeted(|| {
            for path in &self.paths {
                for node in path.query_located(doc).iter() {
                    let keys: Vec<Key> = node.location().iter().map(Key::from).collect();
                    if !keys.is_empty() {
                        located.push(keys);
                    }
                }
            }
        });
        // Document order compares indices as numbers and names as the map orders them.
        located.sort();
        located.dedup();
        for keys in located.into_iter().rev() {
            let Some((last, parent)) = keys.split_last() else {
                continue;
            };
            let Some(holder) = parent.iter().try_fold(&mut *doc, |v, k| k.step(v)) else {
                continue;
            };
            let Some(value) = last.step(holder) else {
                continue;
            };
            let path = render(keys.iter().map(Key::as_elem));
            let outcome = edit(value, &path);
            found.push(path);
            if outcome == Outcome::Remove {
                match (holder, last) {
                    (Value::Object(map), Key::Name(name)) => {
                        map.remove(name);
                    }
                    (Value::Array(items), Key::Index(i)) => {
                        items.remove(*i);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Runs queries under [`iregexp`]'s per-evaluation budget for patterns read from
/// documents (nothing to bound without `match()`/`search()`).
fn budgeted<T>(query: impl FnOnce() -> T) -> T {
    #[cfg(feature = "iregexp")]
    return iregexp::with_budget(query);
    #[cfg(not(feature = "iregexp"))]
    query()
}

/// Appends `['name']` to a normalized path, escaped as RFC 9535 §2.7 says.
pub fn push_name(path: &mut String, name: &str) {
    path.push_str("['");
    for c in name.chars() {
        match c {
            '\u{8}' => path.push_str("\\b"),
            '\u{c}' => path.push_str("\\f"),
            '\n' => path.push_str("\\n"),
            '\r' => path.push_str("\\r"),
            '\t' => path.push_str("\\t"),
            '\'' => path.push_str("\\'"),
            '\\' => path.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(path, "\\u{:04x}", c as u32);
            }
            c => path.push(c),
        }
    }
    path.push_str("']");
}

/// Appends `[index]` to a normalized path.
pub fn push_index(path: &mut String, index: usize) {
    let _ = write!(path, "[{index}]");
}

/// Whether `path` is a normalized path (RFC 9535 §2.7) exactly as [`push_name`] and
/// [`push_index`] write them: `$`, then `['name']` or `[index]` steps.
pub fn is_normalized(path: &str) -> bool {
    let Some(mut rest) = path.strip_prefix('$') else {
        return false;
    };
    while !rest.is_empty() {
        if let Some(name) = rest.strip_prefix("['") {
            let mut chars = name.char_indices();
            loop {
                match chars.next() {
                    None => return false,
                    Some((i, '\'')) => {
                        rest = &name[i + 1..];
                        break;
                    }
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'b' | 'f' | 'n' | 'r' | 't' | '\'' | '\\')) => {}
                        Some((i, 'u')) => {
                            let hex = name.get(i + 1..i + 5).unwrap_or("");
                            // Only controls without a short escape, in lower case.
                            let ok = hex.len() == 4
                                && hex.starts_with("00")
                                && hex[2..]
                                    .bytes()
                                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                                && !matches!(&hex[2..], "08" | "09" | "0a" | "0c" | "0d")
                                && hex.as_bytes()[2] <= b'1';
                            if !ok {
                                return false;
                            }
                            for _ in 0..4 {
                                chars.next();
                            }
                        }
                        _ => return false,
                    },
                    Some((_, c)) if (c as u32) < 0x20 => return false,
                    Some(_) => {}
                }
            }
            rest = match rest.strip_prefix(']') {
                Some(r) => r,
                None => return false,
            };
        } else if let Some(index) = rest.strip_prefix('[') {
            let Some(end) = index.find(']') else {
                return false;
            };
            let digits = &index[..end];
            // RFC 9535 indices are I-JSON integers: at most 2^53 - 1.
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
                || digits.parse::<u64>().map_or(true, |i| i > (1 << 53) - 1)
            {
                return false;
            }
            rest = &index[end + 1..];
        } else {
            return false;
        }
    }
    true
}

/// One step from a value to a child, owned: sorts in document order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Index(usize),
    Name(String),
}

impl From<&PathElement<'_>> for Key {
    fn from(e: &PathElement<'_>) -> Self {
        match e {
            PathElement::Name(n) => Key::Name((*n).to_string()),
            PathElement::Index(i) => Key::Index(*i),
        }
    }
}

impl Key {
    fn step<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        match (self, value) {
            (Key::Name(n), Value::Object(map)) => map.get_mut(n),
            (Key::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        }
    }

    fn as_elem(&self) -> Elem<'_> {
        match self {
            Key::Name(n) => Elem::Name(n),
            Key::Index(i) => Elem::Index(*i),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Elem<'a> {
    Name(&'a str),
    Index(usize),
}

fn render<'a>(elems: impl Iterator<Item = Elem<'a>>) -> String {
    let mut path = String::from("$");
    for e in elems {
        match e {
            Elem::Name(n) => push_audit_name(&mut path, n),
            Elem::Index(i) => push_index(&mut path, i),
        }
    }
    path
}

/// The way from the root to the value being visited, kept on the walk's stack: a path
/// string is only made for a selected value.
struct Trail<'a> {
    up: Option<&'a Trail<'a>>,
    elem: Elem<'a>,
}

impl Trail<'_> {
    fn render(&self) -> String {
        let mut elems = Vec::new();
        let mut at = Some(self);
        while let Some(t) = at {
            elems.push(t.elem);
            at = t.up;
        }
        render(elems.into_iter().rev())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Sel {
    Name(String),
    Index(i64),
    Wild,
}

impl Sel {
    fn matches_name(&self, key: &str) -> bool {
        match self {
            Sel::Name(n) => n == key,
            Sel::Wild => true,
            Sel::Index(_) => false,
        }
    }

    fn matches_index(&self, i: usize, len: usize) -> bool {
        match *self {
            Sel::Index(n) if n >= 0 => usize::try_from(n).is_ok_and(|n| n == i),
            Sel::Index(n) => {
                usize::try_from(n.unsigned_abs()).is_ok_and(|back| back <= len && len - back == i)
            }
            Sel::Wild => true,
            Sel::Name(_) => false,
        }
    }
}

/// One position of the walk's automaton: a segment still to match, or the end of a path.
#[derive(Debug, Clone)]
enum Position {
    Segment {
        descendant: bool,
        selectors: Vec<Sel>,
    },
    End,
}

/// The single walk: every path's segments laid end to end, one bit per position; a
/// value's state is the set of positions reached there.
#[derive(Debug, Clone)]
struct Walk {
    positions: Vec<Position>,
    start: u64,
    end: u64,
}

impl Walk {
    /// The walk for `paths`, or `None` if a path uses anything but names, indices and
    /// wildcards, or there are more than 64 positions.
    fn new<'p>(paths: impl Iterator<Item = (&'p str, &'p JsonPath)>) -> Option<Walk> {
        let mut walk = Walk {
            positions: Vec::new(),
            start: 0,
            end: 0,
        };
        for (source, parsed) in paths {
            let segments = segments(source)?;
            // The shapes must agree with serde_json_path's own reading of the path, so
            // a path this small parser misreads is left to the located query.
            if shape(&segments) != parsed.to_string() {
                return None;
            }
            let first = walk.positions.len();
            walk.positions
                .extend(segments.into_iter().map(|s| s.position));
            walk.positions.push(Position::End);
            if walk.positions.len() > 64 {
                return None;
            }
            walk.start |= 1 << first;
            walk.end |= 1 << (walk.positions.len() - 1);
        }
        Some(walk)
    }

    /// The positions a child reaches from `live` (positions at its parent).
    fn advance(&self, live: u64, matches: impl Fn(&Sel) -> bool) -> u64 {
        let mut next = 0;
        let mut bits = live;
        while bits != 0 {
            let i = bits.trailing_zeros();
            bits &= bits - 1;
            if let Position::Segment {
                descendant,
                selectors,
            } = &self.positions[i as usize]
            {
                if *descendant {
                    next |= 1 << i;
                }
                if selectors.iter().any(&matches) {
                    next |= 1 << (i + 1);
                }
            }
        }
        next
    }

    fn visit<F>(
        &self,
        value: &mut Value,
        live: u64,
        trail: Option<&Trail<'_>>,
        edit: &mut F,
        found: &mut Vec<String>,
    ) where
        F: FnMut(&mut Value, &str) -> Outcome,
    {
        match value {
            Value::Object(map) => {
                let mut gone = Vec::new();
                for (key, child) in map.iter_mut().rev() {
                    let next = self.advance(live, |s| s.matches_name(key));
                    if next == 0 {
                        continue;
                    }
                    let here = Trail {
                        up: trail,
                        elem: Elem::Name(key),
                    };
                    if self.settle(child, next, &here, edit, found) == Outcome::Remove {
                        gone.push(key.clone());
                    }
                }
                for key in gone {
                    map.remove(&key);
                }
            }
            Value::Array(items) => {
                let len = items.len();
                let mut gone = Vec::new();
                for (i, child) in items.iter_mut().enumerate().rev() {
                    let next = self.advance(live, |s| s.matches_index(i, len));
                    if next == 0 {
                        continue;
                    }
                    let here = Trail {
                        up: trail,
                        elem: Elem::Index(i),
                    };
                    if self.settle(child, next, &here, edit, found) == Outcome::Remove {
                        gone.push(i);
                    }
                }
                // `gone` is descending; one pass keeps the rest.
                if !gone.is_empty() {
                    let mut index = 0;
                    items.retain(|_| {
                        let keep = gone.last() != Some(&index);
                        if !keep {
                            gone.pop();
                        }
                        index += 1;
                        keep
                    });
                }
            }
            _ => {}
        }
    }

    /// Visits a child's own selected descendants, then edits the child if a path ends there.
    fn settle<F>(
        &self,
        child: &mut Value,
        reached: u64,
        here: &Trail<'_>,
        edit: &mut F,
        found: &mut Vec<String>,
    ) -> Outcome
    where
        F: FnMut(&mut Value, &str) -> Outcome,
    {
        let live = reached & !self.end;
        if live != 0 {
            self.visit(child, live, Some(here), edit, found);
        }
        if reached & self.end == 0 {
            return Outcome::Keep;
        }
        let path = here.render();
        let outcome = edit(child, &path);
        found.push(path);
        outcome
    }
}

/// A parsed segment and how `serde_json_path` displays it.
struct Segment {
    position: Position,
    shape: String,
}

/// The segments of a path made of names, indices and wildcards; `None` for anything else.
fn segments(source: &str) -> Option<Vec<Segment>> {
    let mut rest = source.strip_prefix('$')?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (descendant, after) = match rest.strip_prefix("..") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (selectors, shape, r) = if let Some(r) = after.strip_prefix('[') {
            let end = r.find(']')?;
            let selectors = r[..end]
                .split(',')
                .map(|part| selector(part.trim_matches([' ', '\t', '\n', '\r'])))
                .collect::<Option<Vec<_>>>()?;
            let shown: Vec<String> = selectors
                .iter()
                .map(|s| match s {
                    Sel::Name(n) => format!("'{n}'"),
                    Sel::Index(i) => i.to_string(),
                    Sel::Wild => "*".into(),
                })
                .collect();
            (selectors, format!("[{}]", shown.join(",")), &r[end + 1..])
        } else {
            let r = if descendant {
                after
            } else {
                after.strip_prefix('.')?
            };
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            let sel = if name == "*" {
                Sel::Wild
            } else if is_shorthand_name(name) {
                Sel::Name(name.to_string())
            } else {
                return None;
            };
            (vec![sel], format!(".{name}"), &r[end..])
        };
        out.push(Segment {
            position: Position::Segment {
                descendant,
                selectors,
            },
            shape: if descendant {
                format!("..{shape}")
            } else {
                shape
            },
        });
        rest = r;
    }
    Some(out)
}

fn shape(segments: &[Segment]) -> String {
    let mut s = String::from("$");
    for seg in segments {
        s.push_str(&seg.shape);
    }
    s
}

/// A name, index or wildcard selector; quoted names with escapes are left to the
/// located query.
fn selector(text: &str) -> Option<Sel> {
    if text == "*" {
        return Some(Sel::Wild);
    }
    for quote in ['\'', '"'] {
        if let Some(name) = text.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
            if text.len() < 2 || name.contains(['\\', '\'', '"']) {
                return None;
            }
            return Some(Sel::Name(name.to_string()));
        }
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(Sel::Index)
}

/// RFC 9535 `member-name-shorthand`.
fn is_shorthand_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
}

#[cfg(test)]
mod tests;

/// Appends `['name']` to a path for an audit record, or `[*]` when `name` does not look
/// like a field name (see [`scrub_keys`]): keys are data too, and a 4 MiB key is never
/// copied into every path below it.
pub fn push_audit_name(path: &mut String, name: &str) {
    if field_like(name) {
        push_name(path, name);
    } else {
        path.push_str("[*]");
    }
}

/// A reported path made fit for an audit record. Only the normalized form (RFC 9535
/// §2.7: `$` then `['name']` and `[index]` segments) is read: every name that does not
/// look like a field name (an ASCII letter or `_` first, then letters, digits, `_` or `-`;
/// at most 64 characters and 4 digits) and every index over 6 digits becomes `[*]`, and
/// anything after a segment that is not in normal form is replaced by one `[*]`. Keys are
/// data too: an email, an SSN or an account number used as an object key names no field
/// and must not be recorded.
///
/// ```
/// assert_eq!(
///     palisade_jsonpath::scrub_keys("$['by_ssn']['219-09-9999']['name']"),
///     "$['by_ssn'][*]['name']"
/// );
/// assert_eq!(palisade_jsonpath::scrub_keys("$['users'][0]['ada@example.com']"), "$['users'][0][*]");
/// assert_eq!(palisade_jsonpath::scrub_keys("$[\"219-09-9999\"]"), "$[*]");
/// ```
pub fn scrub_keys(path: &str) -> String {
    let Some(mut rest) = path.strip_prefix('$') else {
        return "[*]".into();
    };
    let mut out = String::from("$");
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix("['") {
            // The closing `']` is the first `'` not escaped by a backslash.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in body.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end.filter(|&e| body[e..].starts_with("']")) else {
                break;
            };
            push_audit_name(&mut out, &body[..end]);
            rest = &body[end + 2..];
            continue;
        }
        if let Some(body) = rest.strip_prefix('[') {
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && body[digits..].starts_with(']') {
                if digits <= 6 {
                    out.push_str(&rest[..digits + 2]);
                } else {
                    out.push_str("[*]");
                }
                rest = &body[digits + 1..];
                continue;
            }
        }
        break;
    }
    if !rest.is_empty() {
        out.push_str("[*]");
    }
    out
}

fn field_like(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name.bytes().filter(u8::is_ascii_digit).count() <= 4
}

//! Built-in redaction: the native phase that removes sensitive values from bodies.
//!
//! Rules are RFC 9535 JSONPath expressions (via `serde_json_path`) or regular
//! expressions (Rust `regex`: linear time, size-capped). Each rule has an action: mask,
//! remove, a keyed hash (HMAC-SHA256) that stays joinable without being reversible, or
//! encryption under the tenant's data key ([`encrypt`]), which an authorised reader can
//! reveal. The phase reports the normalized paths it redacted, never values.
//!
//! It fails closed: a body that must be redacted but is not valid JSON (for path rules)
//! or not UTF-8 (for regex rules) is an error, so the unredacted bytes never pass.
//!
//! ```
//! use palisade_gateway::redaction::{Action, Redactor, Rule};
//!
//! let redactor = Redactor::new(&[Rule::path("$..ssn", Action::Mask)], None).unwrap();
//! let out = redactor.redact(br#"{"user": {"ssn": "123-45-6789"}}"#).unwrap();
//! assert_eq!(out.body.as_deref(), Some(&br#"{"user":{"ssn":"[REDACTED]"}}"#[..]));
//! assert_eq!(out.paths, vec!["$['user']['ssn']"]);
//! ```

mod config;
pub mod encrypt;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use palisade_jsonpath::{Outcome, Selection, push_audit_name, push_index};
use regex::{Regex, RegexBuilder};
use serde_json::Value;
use sha2::Sha256;

/// The longest regex source accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 4_096;
/// The compiled size cap of one regex (the `regex` crate's NFA), in bytes.
pub const MAX_REGEX_SIZE: usize = 1 << 20;
/// The JSON nesting accepted (`serde_json`'s own recursion limit).
pub const MAX_DEPTH: usize = 128;

/// What happens to a matched value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace with `[REDACTED]` (a regex match inside a string: only the match).
    Mask,
    /// Remove the field or array element (a regex match inside a string: only the match).
    Remove,
    /// Replace with `[hash:<16 hex of HMAC-SHA256(key, value)>]`.
    Hash,
    /// Replace with a token sealed under the tenant's data key, bound to the value's
    /// path ([`encrypt`]).
    Encrypt(encrypt::Mode),
}

/// A redaction rule as configured (a `redact` entry lowers into one, see `config.rs`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "config::Written")]
pub struct Rule {
    /// A JSONPath selecting values, or a regex matching inside strings.
    pub selector: Selector,
    /// What to do with matches.
    pub action: Action,
}

/// How a rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// An RFC 9535 JSONPath.
    Path(String),
    /// A regular expression applied to every string value and object key (or to a text
    /// body).
    Regex(String),
    /// A response header, by name (case-insensitive): every value of it.
    Header(String),
}

impl Rule {
    /// A JSONPath rule.
    pub fn path(path: &str, action: Action) -> Self {
        Rule {
            selector: Selector::Path(path.to_string()),
            action,
        }
    }
    /// A regex rule.
    pub fn regex(pattern: &str, action: Action) -> Self {
        Rule {
            selector: Selector::Regex(pattern.to_string()),
            action,
        }
    }
    /// A response-header rule.
    pub fn header(name: &str, action: Action) -> Self {
        Rule {
            selector: Selector::Header(name.to_ascii_lowercase()),
            action,
        }
    }
}

/// A rule that cannot be used; names the rule by its place in the list (the first is 1).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The JSONPath does not parse.
    #[error("rule {}: invalid JSONPath: {message}", index + 1)]
    Path {
        /// Index of the rule (from 0).
        index: usize,
        /// The parser's message.
        message: String,
    },
    /// The regex is too long, too large once compiled, or invalid.
    #[error("rule {}: invalid or oversized regex: {message}", index + 1)]
    Regex {
        /// Index of the rule (from 0).
        index: usize,
        /// Why.
        message: String,
    },
    /// A hash action without a key.
    #[error("rule {}: action `hash` needs a hash key", index + 1)]
    NoHashKey {
        /// Index of the rule (from 0).
        index: usize,
    },
    /// An encrypt action without the tenant's data key (`[secrets]`).
    #[error("rule {}: action `encrypt` needs the tenant's data key ([secrets])", index + 1)]
    NoFieldKey {
        /// Index of the rule (from 0).
        index: usize,
    },
    /// A mandatory path that is not a valid JSONPath.
    #[error("mandatory path `{path}` is not a valid JSONPath")]
    Mandatory {
        /// The path.
        path: String,
    },
}

impl ConfigError {
    /// The index (from 0) of the rule at fault, if it is about one.
    pub fn index(&self) -> Option<usize> {
        match self {
            ConfigError::Path { index, .. }
            | ConfigError::Regex { index, .. }
            | ConfigError::NoHashKey { index }
            | ConfigError::NoFieldKey { index } => Some(*index),
            ConfigError::Mandatory { .. } => None,
        }
    }
}

/// Why a body could not be redacted. The gateway fails the request closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedactionError {
    /// Path rules need JSON and the body is not valid JSON (or nests deeper than [`MAX_DEPTH`]).
    #[error("body is not valid JSON")]
    NotJson,
    /// The body is not text Palisade can read unambiguously: invalid UTF-8 or UTF-16, a
    /// charset other than those, NUL or other control bytes.
    #[error("body is not UTF-8 or UTF-16 text")]
    NotUtf8,
    /// A text body with `\\uXXXX`/`\\xXX` escapes, which a reader could decode into what
    /// the rules would match.
    #[error("text body with escape sequences")]
    Escaped,
}

impl RedactionError {
    /// The audit cause of the 502 this error becomes.
    pub fn cause(&self) -> &'static str {
        match self {
            RedactionError::NotJson => "redaction_not_json",
            RedactionError::NotUtf8 => "redaction_not_utf8",
            RedactionError::Escaped => "redaction_escaped_text",
        }
    }
}

/// The result of redacting one body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    /// The new body: a JSON body is always re-encoded from what was checked; `None` for
    /// text in which nothing matched (send the original).
    pub body: Option<Bytes>,
    /// Normalized paths of the redacted values (`$` for a text body), never values.
    pub paths: Vec<String>,
}

enum Compiled {
    /// One path per rule: rules apply in order, each to the previous one's result.
    Path(Selection),
    Regex(Regex),
}

/// A compiled set of rules. Build once per route; use from any thread.
pub struct Redactor {
    rules: Vec<(Compiled, Action)>,
    /// Response-header rules: lowercase names.
    headers: Vec<(String, Action)>,
    hash_key: Option<Vec<u8>>,
    field_key: Option<std::sync::Arc<encrypt::FieldKey>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash key is a secret: never printed.
        f.debug_struct("Redactor")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// Compiles `rules`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid JSONPath, a regex over [`MAX_REGEX_LEN`] bytes or
    /// [`MAX_REGEX_SIZE`] compiled, or a hash action without `hash_key`.
    pub fn new(rules: &[Rule], hash_key: Option<&[u8]>) -> Result<Self, ConfigError> {
        Self::with_keys(rules, hash_key, None)
    }

    /// Compiles `rules`, whose `encrypt` actions seal under `field_key`.
    ///
    /// # Errors
    ///
    /// As [`Redactor::new`], and [`ConfigError::NoFieldKey`] for an encrypt action
    /// without `field_key`.
    pub fn with_keys(
        rules: &[Rule],
        hash_key: Option<&[u8]>,
        field_key: Option<std::sync::Arc<encrypt::FieldKey>>,
    ) -> Result<Self, ConfigError> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut headers = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            if rule.action == Action::Hash && hash_key.is_none_or(<[u8]>::is_empty) {
                return Err(ConfigError::NoHashKey { index });
            }
            if matches!(rule.action, Action::Encrypt(_)) && field_key.is_none() {
                return Err(ConfigError::NoFieldKey { index });
            }
            let c = match &rule.selector {
                Selector::Path(p) => {
                    Compiled::Path(Selection::parse(&[p]).map_err(|e| ConfigError::Path {
                        index,
                        message: e.message,
                    })?)
                }
                Selector::Regex(r) => {
                    if r.len() > MAX_REGEX_LEN {
                        return Err(ConfigError::Regex {
                            index,
                            message: format!("{} bytes, limit {MAX_REGEX_LEN}", r.len()),
                        });
                    }
                    Compiled::Regex(
                        RegexBuilder::new(r)
                            .size_limit(MAX_REGEX_SIZE)
                            .dfa_size_limit(MAX_REGEX_SIZE)
                            .build()
                            .map_err(|e| ConfigError::Regex {
                                index,
                                message: e.to_string(),
                            })?,
                    )
                }
                Selector::Header(name) => {
                    headers.push((name.to_ascii_lowercase(), rule.action));
                    continue;
                }
            };
            compiled.push((c, rule.action));
        }
        Ok(Redactor {
            rules: compiled,
            headers,
            hash_key: hash_key.map(<[u8]>::to_vec),
            field_key,
        })
    }

    /// Whether a `remove` regex rule matches `text` (a key: its entry goes, rather than
    /// being renamed).
    fn removes(&self, text: &str) -> bool {
        self.rules.iter().any(|(c, a)| {
            *a == Action::Remove && matches!(c, Compiled::Regex(re) if re.is_match(text))
        })
    }

    /// Whether the rules include any JSONPath rule (such routes need JSON bodies).
    fn has_path_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|(c, _)| matches!(c, Compiled::Path(_)))
    }

    /// Redacts `body`, read as UTF-8 JSON or text (see [`Redactor::redact_as`]).
    ///
    /// # Errors
    ///
    /// As [`Redactor::redact_as`].
    pub fn redact(&self, body: &[u8]) -> Result<Redacted, RedactionError> {
        self.redact_as(body, None)
    }

    /// Redacts `body`, read the way its recipient will per `content_type`
    /// ([`palisade_jsonpath::body::decode`]: UTF-8 or UTF-16, one JSON document, JSON
    /// lines or text), and written back in its own encoding.
    ///
    /// An empty body is returned unchanged. JSON gets path rules, then regex rules on every
    /// string value and key; each JSON line likewise (paths `$[line]...`); text gets regex
    /// rules. Text is an error when there are path rules.
    ///
    /// # Errors
    ///
    /// [`RedactionError`] (fail closed): text with path rules or broken JSON (`NotJson`),
    /// unreadable text (`NotUtf8`), text with escape sequences (`Escaped`).
    pub fn redact_as(
        &self,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Redacted, RedactionError> {
        use palisade_jsonpath::body::{Document, Unreadable, decode};
        if self.rules.is_empty() || body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Redacted::default());
        }
        let decoded = decode(body, content_type).map_err(|e| match e {
            Unreadable::Charset | Unreadable::NotText => RedactionError::NotUtf8,
            Unreadable::Escaped if !self.has_path_rules() => RedactionError::Escaped,
            Unreadable::BrokenJson | Unreadable::Escaped => RedactionError::NotJson,
        })?;
        if decoded.is_utf16() {
            // A client that ignores the charset reads the bytes one per character: a match
            // there is a second reading the redaction cannot fix in place.
            let bytewise: String = body.iter().map(|&b| char::from(b)).collect();
            if self.matches_any(&bytewise) {
                return Err(RedactionError::NotUtf8);
            }
        }
        if matches!(decoded.document, Document::Text(_)) && self.has_path_rules() {
            return Err(RedactionError::NotJson);
        }
        let (body, paths) = decoded.edit(
            |doc| self.redact_json(doc),
            |text| {
                let (out, hit) = self.regex_text(text, "$");
                hit.then(|| out.into_owned())
            },
        );
        Ok(Redacted {
            body: body.map(Bytes::from),
            paths,
        })
    }

    /// Redacts a response: its headers by the header rules, its body by the others (read per
    /// its `Content-Type`). Returns what was redacted: body paths, and `header:<name>` for
    /// each header.
    ///
    /// # Errors
    ///
    /// As [`Redactor::redact_as`]; the response must not be sent.
    pub fn redact_response(
        &self,
        res: &mut palisade_runtime::Response,
    ) -> Result<Vec<String>, RedactionError> {
        let mut redacted = Vec::new();
        if !self.headers.is_empty() {
            let mut kept = Vec::with_capacity(res.headers.len());
            for (name, value) in std::mem::take(&mut res.headers) {
                let rule = self
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name));
                match rule {
                    None => kept.push((name, value)),
                    Some((n, action)) => {
                        redacted.push(format!("header:{n}"));
                        if *action != Action::Remove {
                            let at = format!("header:{n}");
                            kept.push((name, self.replacement(*action, &value, &at)));
                        }
                    }
                }
            }
            res.headers = kept;
            redacted.dedup();
        }
        let content_type = res
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        let out = self.redact_as(&res.body, content_type)?;
        if let Some(body) = out.body {
            res.body = body;
        }
        redacted.extend(out.paths);
        Ok(redacted)
    }

    /// The response headers these rules redact (lowercase).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(n, _)| n.as_str())
    }

    /// Redacts a parsed document in place; returns the redacted paths.
    pub fn redact_json(&self, doc: &mut Value) -> Vec<String> {
        let mut paths = Vec::new();
        for (rule, action) in &self.rules {
            let Compiled::Path(selection) = rule else {
                continue;
            };
            // Reverse document order (the selection's), so removing an array element
            // does not shift one still to be changed.
            paths.extend(selection.edit_at(doc, &mut |v, at| self.apply(v, *action, at)));
        }
        if self
            .rules
            .iter()
            .any(|(c, _)| matches!(c, Compiled::Regex(_)))
        {
            let mut path = String::from("$");
            self.regex_walk(doc, &mut path, &mut paths);
        }
        paths
    }

    fn apply(&self, value: &mut Value, action: Action, at: &str) -> Outcome {
        if action == Action::Remove {
            return Outcome::Remove;
        }
        let replacement = match (&*value, action, &self.field_key) {
            // The value itself, with its type: reveal gives back what was there.
            (v, Action::Encrypt(mode), Some(key)) => key.seal(mode, at, v),
            (Value::String(s), ..) => self.replacement(action, s, at),
            (other, ..) => self.replacement(action, &other.to_string(), at),
        };
        *value = Value::String(replacement);
        Outcome::Keep
    }

    /// What a matched string becomes; `at` is where it was (the normalized path, or
    /// `header:<name>`), which an encrypted token is bound to.
    fn replacement(&self, action: Action, value: &str, at: &str) -> String {
        if let (Action::Encrypt(mode), Some(key)) = (action, &self.field_key) {
            return key.seal(mode, at, &Value::String(value.to_string()));
        }
        match (action, &self.hash_key) {
            (Action::Hash, Some(key)) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
                mac.update(value.as_bytes());
                format!("[hash:{}]", &hex::encode(mac.finalize().into_bytes())[..16])
            }
            (Action::Remove, _) => String::new(),
            _ => "[REDACTED]".to_string(),
        }
    }

    /// Whether any regex rule matches `text`.
    fn matches_any(&self, text: &str) -> bool {
        self.rules
            .iter()
            .any(|(c, _)| matches!(c, Compiled::Regex(re) if re.is_match(text)))
    }

    /// Applies every regex rule to `text`, found at `at`; returns the new text and whether
    /// anything matched.
    fn regex_text<'t>(&self, text: &'t str, at: &str) -> (std::borrow::Cow<'t, str>, bool) {
        let mut current = std::borrow::Cow::Borrowed(text);
        let mut hit = false;
        for (rule, action) in &self.rules {
            let Compiled::Regex(re) = rule else { continue };
            if re.is_match(&current) {
                hit = true;
                let replaced = re
                    .replace_all(&current, |c: &regex::Captures<'_>| {
                        self.replacement(*action, &c[0], at)
                    })
                    .into_owned();
                current = std::borrow::Cow::Owned(replaced);
            }
        }
        (current, hit)
    }

    fn regex_walk(&self, value: &mut Value, path: &mut String, found: &mut Vec<String>) {
        match value {
            Value::String(s) => {
                let (out, hit) = self.regex_text(s, path);
                if hit {
                    let out = out.into_owned();
                    *s = out;
                    found.push(path.clone());
                }
            }
            Value::Number(n) => {
                let text = n.to_string();
                let (out, hit) = self.regex_text(&text, path);
                if hit {
                    let out = out.into_owned();
                    *value = Value::String(out);
                    found.push(path.clone());
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    push_index(path, i);
                    self.regex_walk(item, path, found);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                // Keys are data too (`{"by_ssn": {"219-09-9999": ...}}`): a key the rules
                // match is masked or hashed like a value, or its entry removed.
                if map.keys().any(|k| self.matches_any(k)) {
                    let old = std::mem::take(map);
                    // Colliding replacements are numbered by one counter per name, so
                    // 100,000 keys masked alike cost linear time.
                    let mut taken: std::collections::HashMap<String, usize> =
                        std::collections::HashMap::new();
                    for (key, item) in old {
                        let (new_key, hit) = self.regex_text(&key, &format!("{path}[*]"));
                        if !hit {
                            map.insert(key, item);
                            continue;
                        }
                        found.push(format!("{path}[*]"));
                        if self.removes(&key) {
                            continue;
                        }
                        let base = new_key.into_owned();
                        let n = taken.entry(base.clone()).or_insert(0);
                        *n += 1;
                        let name = if *n == 1 { base } else { format!("{base}#{n}") };
                        map.insert(name, item);
                    }
                }
                for (key, item) in map.iter_mut() {
                    let len = path.len();
                    push_audit_name(path, key);
                    self.regex_walk(item, path, found);
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// Whether these rules redact every value `mandatory` can select: the path rules run
    /// against a probe document that has a value at every place `mandatory` points
    /// (several elements per wildcard), and together must select all of them.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Mandatory`] when `mandatory` is not a JSONPath made of names,
    /// indices and wildcards.
    pub fn covers(&self, mandatory: &str) -> Result<bool, ConfigError> {
        let bad = || ConfigError::Mandatory {
            path: mandatory.to_string(),
        };
        let probe_path = Selection::parse(&[mandatory]).map_err(|_| bad())?;
        let doc = skeleton(mandatory).ok_or_else(bad)?;
        let targets = probe_path.locate(&doc);
        if targets.is_empty() {
            return Err(bad());
        }
        let covered: Vec<String> = self
            .rules
            .iter()
            .filter_map(|(rule, _)| match rule {
                Compiled::Path(p) => Some(p.locate(&doc)),
                Compiled::Regex(_) => None,
            })
            .flatten()
            .collect();
        Ok(targets.iter().all(|target| covered.contains(target)))
    }
}

/// Array elements a wildcard of a mandatory path is probed with: a rule that names a
/// few indices instead of `[*]` is caught (a config check against omissions, not
/// against an adversary who lists every index).
const PROBE_ELEMENTS: usize = 3;

/// A document with a string at every place a simple JSONPath (`$.a.b[0]`, `$['a'][*]`)
/// points ([`PROBE_ELEMENTS`] elements per wildcard); `None` for anything else
/// (filters, slices, descendant wildcards). A descendant name (`$..ssn`) is probed at
/// the top, nested in an object and inside array elements.
fn skeleton(path: &str) -> Option<Value> {
    enum Seg {
        Name(String),
        Index(usize),
        Wild,
        /// `..name`: the name at the top, nested in an object and inside an array.
        Descendant(String),
    }
    let mut rest = path.strip_prefix('$')?;
    let mut segments = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            match &r[..end] {
                "" | "*" => return None,
                name => segments.push(Seg::Descendant(name.to_string())),
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            segments.push(match name {
                "" => return None,
                "*" => Seg::Wild,
                n => Seg::Name(n.to_string()),
            });
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            segments.push(if inner == "*" {
                Seg::Wild
            } else if let Ok(i) = inner.parse::<usize>() {
                Seg::Index(i)
            } else if let Some(name) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Seg::Name(name.to_string())
            } else {
                return None;
            });
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    let mut value = Value::String("probe".into());
    for seg in segments.into_iter().rev() {
        value = match seg {
            Seg::Name(name) => Value::Object([(name, value)].into_iter().collect()),
            Seg::Index(i) => Value::Array(vec![value; (i + 1).max(PROBE_ELEMENTS)]),
            Seg::Wild => Value::Array(vec![value; PROBE_ELEMENTS]),
            Seg::Descendant(name) => {
                let leaf = |v: &Value| -> Value {
                    Value::Object([(name.clone(), v.clone())].into_iter().collect())
                };
                let mut top = leaf(&value);
                let mut nested = leaf(&value);
                nested["probe_list"] = Value::Array(vec![leaf(&value); PROBE_ELEMENTS]);
                top["probe_nested"] = nested;
                top
            }
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests;

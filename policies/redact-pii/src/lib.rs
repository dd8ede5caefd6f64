//! `redact-pii`: removes personal data from JSON and text bodies.
//!
//! Two mechanisms, both on by default:
//! - **rules**: RFC 9535 JSONPath expressions from config (`paths`) whose values are
//!   redacted whatever they contain;
//! - **detectors**: US SSN, payment cards (Luhn), email, E.164 phone, IBAN (mod 97),
//!   India Aadhaar (Verhoeff) and India PAN, found anywhere in the document: nested
//!   objects, arrays, inside free text and in numbers. Look-alikes that fail their
//!   checksum stay.
//!
//! Every redacted location is reported to the host as a normalized JSONPath; values are
//! never logged. A body that is neither JSON nor UTF-8 text fails the invocation, so an
//! unredacted body never passes. See README.md for the config keys.

mod checksum;
mod detect;

use hmac::{Hmac, Mac};
use palisade_jsonpath::{Outcome, Selection, push_audit_name, push_index};
use palisade_sdk::{
    Action, Context, Error, LogLevel, Policy, Request, RequestHead, Response, Result, SealMode,
};
use serde_json::Value;
use sha2::Sha256;

pub use crate::detect::{Kind, redact_text};

/// What happens to a redacted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Replace with `[REDACTED:<kind>]` (rules: `[REDACTED]`).
    Mask,
    /// Replace with `[<kind>:<16 hex of HMAC-SHA256(key, value)>]` (rules: `[hash:...]`):
    /// joinable, not reversible.
    Hash(Vec<u8>),
    /// Remove the field (or array element) that holds the value.
    Remove,
    /// Rules only: seal the value into a field encryption token with the tenant's data
    /// key (the route must grant `field_encryption = true`); an authorised reader gets it
    /// back with `palisade secret reveal`. Detectors still mask.
    Encrypt(SealMode),
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configured paths, as one selection (their union), if any.
    rules: Option<Selection>,
    kinds: Vec<Kind>,
    mode: Mode,
    request: bool,
    response: bool,
}

impl Settings {
    /// Reads the policy's config.
    ///
    /// # Errors
    ///
    /// On an unknown mode, detector or phase, an invalid JSONPath, or `hash` mode without `hash_key`.
    pub fn from_context(ctx: &Context) -> Result<Self> {
        let paths = match ctx.config("paths").map(str::trim) {
            None | Some("") => Vec::new(),
            Some(list) if list.starts_with('[') => serde_json::from_str::<Vec<String>>(list)?,
            Some(single) => vec![single.to_string()],
        };
        let rules = if paths.is_empty() {
            None
        } else {
            Some(Selection::parse(&paths).map_err(|e| {
                Error::msg(format!(
                    "invalid JSONPath `{}`: {}",
                    paths[e.index], e.message
                ))
            })?)
        };
        let kinds = match ctx.config("detectors").map(str::trim) {
            None | Some("all") => Kind::ALL.to_vec(),
            Some("none") | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|n| {
                    Kind::parse(n.trim())
                        .ok_or_else(|| Error::msg(format!("unknown detector `{}`", n.trim())))
                })
                .collect::<Result<_>>()?,
        };
        let mode = match ctx.config("mode").unwrap_or("mask") {
            "mask" => Mode::Mask,
            "remove" => Mode::Remove,
            "encrypt" => Mode::Encrypt(SealMode::Randomized),
            "encrypt-deterministic" => Mode::Encrypt(SealMode::Deterministic),
            "hash" => Mode::Hash(
                ctx.config("hash_key")
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| Error::msg("mode `hash` needs `hash_key`"))?
                    .as_bytes()
                    .to_vec(),
            ),
            other => {
                return Err(Error::msg(format!(
                    "unknown mode `{other}` (mask, hash, remove, encrypt, encrypt-deterministic)"
                )));
            }
        };
        let (request, response) = match ctx.config("phases").unwrap_or("both") {
            "both" => (true, true),
            "request" => (true, false),
            "response" => (false, true),
            other => {
                return Err(Error::msg(format!(
                    "unknown phases `{other}` (request, response, both)"
                )));
            }
        };
        Ok(Settings {
            rules,
            kinds,
            mode,
            request,
            response,
        })
    }

    /// The replacement of a detected value (`tag` is its kind) or of a rule's value
    /// (`tag` is `None`).
    fn replacement(&self, tag: Option<&str>, value: &str) -> String {
        match (&self.mode, tag) {
            (Mode::Hash(key), tag) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
                mac.update(value.as_bytes());
                format!(
                    "[{}:{}]",
                    tag.unwrap_or("hash"),
                    &hex::encode(mac.finalize().into_bytes())[..16]
                )
            }
            (_, Some(tag)) => format!("[REDACTED:{tag}]"),
            (_, None) => "[REDACTED]".to_string(),
        }
    }

    /// Redacts a body; returns the new body and the redacted paths, or `None` when
    /// nothing was found.
    ///
    /// # Errors
    ///
    /// When the body is neither JSON nor UTF-8 text (fail closed).
    pub fn redact_body(&self, body: &[u8]) -> Result<Option<(Vec<u8>, Vec<String>)>> {
        self.redact_body_as(body, None)
    }

    /// Redacts `body` read the way its recipient will per `content_type` (UTF-8 or UTF-16,
    /// one JSON document, JSON lines, or text; `palisade_jsonpath::body`), written back in
    /// its own encoding.
    ///
    /// # Errors
    ///
    /// When the body cannot be read unambiguously (another charset, control bytes, broken
    /// or too-deep JSON, escape sequences in text, a UTF-16 body whose bytes read one per
    /// character hold personal data): fail closed.
    pub fn redact_body_as(
        &self,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Vec<String>)>> {
        use palisade_jsonpath::body::decode;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let unreadable =
            |why: &str| Error::msg(format!("body cannot be read unambiguously ({why})"));
        let decoded = decode(body, content_type).map_err(|e| unreadable(e.as_str()))?;
        let detect = |text: &str| {
            redact_text(text, &self.kinds, &mut |kind, value| {
                self.replacement(Some(kind.name()), value)
            })
        };
        if decoded.is_utf16() {
            let bytewise: String = body.iter().map(|&b| char::from(b)).collect();
            if detect(&bytewise).is_some() {
                return Err(unreadable("utf16_bytewise"));
            }
        }
        let mut failed = None;
        let (body, paths) = decoded.edit(
            |doc| {
                self.redact_json(doc).unwrap_or_else(|e| {
                    failed = Some(e);
                    Vec::new()
                })
            },
            |text| detect(text).map(|(out, _)| out),
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(body.map(|b| (b, paths))),
        }
    }

    /// Redacts a JSON document in place and returns the normalized paths redacted.
    ///
    /// # Errors
    ///
    /// In `encrypt` mode, when the host does not seal (the route does not grant
    /// `field_encryption`): the value is masked, and the body must not pass.
    pub fn redact_json(&self, doc: &mut Value) -> Result<Vec<String>> {
        // Rules first, deepest and last first (the selection's order), so removing an
        // array element does not shift one still to be visited; never the whole document.
        let mut refused = None;
        let mut paths = match &self.rules {
            Some(selection) => selection.edit_at(doc, &mut |v, path| {
                if self.mode == Mode::Remove {
                    return Outcome::Remove;
                }
                if let Mode::Encrypt(mode) = self.mode {
                    *v = Value::String(match palisade_sdk::seal(path, v, mode) {
                        Ok(token) => token,
                        Err(e) => {
                            refused.get_or_insert(e);
                            "[REDACTED]".into()
                        }
                    });
                    return Outcome::Keep;
                }
                let replacement = match &*v {
                    Value::String(s) => self.replacement(None, s),
                    other => self.replacement(None, &other.to_string()),
                };
                *v = Value::String(replacement);
                Outcome::Keep
            }),
            None => Vec::new(),
        };
        if !self.kinds.is_empty() {
            let mut path = String::from("$");
            // A document that is itself the personal data (`"123-45-6789"`) cannot be
            // removed from its parent: in remove mode it becomes `null`.
            if self.walk(doc, &mut path, &mut paths) {
                *doc = Value::Null;
            }
        }
        match refused {
            Some(e) => Err(Error::msg(format!("encrypt: {e}"))),
            None => Ok(paths),
        }
    }

    /// Applies the detectors to every string and number; returns whether `value` itself
    /// must be removed (remove mode).
    fn walk(&self, value: &mut Value, path: &mut String, found: &mut Vec<String>) -> bool {
        match value {
            Value::String(s) => self.scan(s, path, found),
            Value::Number(n) => {
                let text = n.to_string();
                match redact_text(&text, &self.kinds, &mut |kind, v| {
                    self.replacement(Some(kind.name()), v)
                }) {
                    Some((redacted, _)) => {
                        found.push(path.clone());
                        if self.mode == Mode::Remove {
                            return true;
                        }
                        *value = Value::String(redacted);
                        false
                    }
                    None => false,
                }
            }
            Value::Array(items) => {
                let mut index = 0;
                items.retain_mut(|item| {
                    let len = path.len();
                    push_index(path, index);
                    index += 1;
                    let remove = self.walk(item, path, found);
                    path.truncate(len);
                    !remove
                });
                false
            }
            Value::Object(map) => {
                // Keys are data too (`{"by_ssn": {"219-09-9999": ...}}`): a key holding
                // personal data is replaced like a value (its entry removed in remove mode),
                // and recorded as `[*]`, never by name.
                let detect = |key: &str| {
                    redact_text(key, &self.kinds, &mut |kind, v| {
                        self.replacement(Some(kind.name()), v)
                    })
                };
                if map.keys().any(|k| detect(k).is_some()) {
                    let old = std::mem::take(map);
                    // Keys that stay keep their names: a replacement never takes one, so
                    // no value is lost to a collision (`#2`, `#3`... instead).
                    let kept: std::collections::HashSet<String> = old
                        .keys()
                        .filter(|k| detect(k).is_none())
                        .cloned()
                        .collect();
                    // One counter per replacement name: linear however many keys collide.
                    let mut taken: std::collections::HashMap<String, usize> =
                        std::collections::HashMap::new();
                    for (key, item) in old {
                        let Some((renamed, _)) = detect(&key) else {
                            map.insert(key, item);
                            continue;
                        };
                        found.push(format!("{path}[*]"));
                        if self.mode == Mode::Remove {
                            continue;
                        }
                        let n = taken.entry(renamed.clone()).or_insert(0);
                        let name = loop {
                            *n += 1;
                            let name = if *n == 1 {
                                renamed.clone()
                            } else {
                                format!("{renamed}#{n}")
                            };
                            if !kept.contains(&name) && !map.contains_key(&name) {
                                break name;
                            }
                        };
                        map.insert(name, item);
                    }
                }
                let mut doomed = Vec::new();
                for (key, item) in map.iter_mut() {
                    let len = path.len();
                    push_audit_name(path, key);
                    if self.walk(item, path, found) {
                        doomed.push(key.clone());
                    }
                    path.truncate(len);
                }
                for key in doomed {
                    map.remove(&key);
                }
                false
            }
            Value::Null | Value::Bool(_) => false,
        }
    }

    fn scan(&self, s: &mut String, path: &str, found: &mut Vec<String>) -> bool {
        match redact_text(s, &self.kinds, &mut |kind, v| {
            self.replacement(Some(kind.name()), v)
        }) {
            Some((redacted, _)) => {
                found.push(path.to_string());
                if self.mode == Mode::Remove {
                    return true;
                }
                *s = redacted;
                false
            }
            None => false,
        }
    }
}

fn report(paths: &[String]) {
    if paths.is_empty() {
        return;
    }
    for p in paths {
        palisade_sdk::redacted(p);
    }
    palisade_sdk::log(
        LogLevel::Info,
        &format!("redacted {} value(s)", paths.len()),
    );
}

/// The policy.
pub struct RedactPii;

impl Policy for RedactPii {
    fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        let settings = Settings::from_context(ctx)?;
        if settings.request {
            let content_type = req.headers.get("content-type").map(str::to_owned);
            if let Some((body, paths)) =
                settings.redact_body_as(req.body(), content_type.as_deref())?
            {
                req.set_body(body);
                report(&paths);
            }
        }
        Ok(Action::Continue(req))
    }

    fn on_response(
        ctx: &Context,
        _req: &RequestHead,
        mut res: Response,
    ) -> Result<Action<Response>> {
        let settings = Settings::from_context(ctx)?;
        if settings.response {
            let content_type = res.headers.get("content-type").map(str::to_owned);
            if let Some((body, paths)) =
                settings.redact_body_as(res.body(), content_type.as_deref())?
            {
                res.set_body(body);
                report(&paths);
            }
        }
        Ok(Action::Continue(res))
    }
}

#[cfg(feature = "export")]
palisade_sdk::export!(RedactPii);

#[cfg(test)]
mod tests {
    use palisade_sdk::testing;
    use serde_json::json;

    use super::*;

    fn run(ctx: &Context, body: Value) -> (Value, Vec<String>) {
        let res = Response::from_json(200, &body);
        let out = testing::response::<RedactPii>(ctx, &Request::get("/").head(), res);
        let body = out.action.unwrap().into_continue().unwrap().into_body();
        (serde_json::from_slice(&body).unwrap(), out.redacted)
    }

    #[test]
    fn detectors_find_values_anywhere_and_keep_look_alikes() {
        let doc = json!({
            "user": {"ssn": "123-45-6789", "note": "call me at +14155552671 or jane@example.com"},
            "cards": ["4111 1111 1111 1111", "4111 1111 1111 1112"],
            "pay": {"iban": "GB82 WEST 1234 5698 7654 32", "aadhaar": "2341 2341 2346", "pan": "ABCPE1234F"},
            "num": 4111111111111111u64,
            "fake_aadhaar": "2341 2341 2347"
        });
        let (out, paths) = run(&Context::default(), doc);
        assert_eq!(out["user"]["ssn"], "[REDACTED:ssn]");
        assert_eq!(
            out["user"]["note"],
            "call me at [REDACTED:phone] or [REDACTED:email]"
        );
        assert_eq!(out["cards"][0], "[REDACTED:card]");
        assert_eq!(out["cards"][1], "4111 1111 1111 1112");
        assert_eq!(out["pay"]["iban"], "[REDACTED:iban]");
        assert_eq!(out["pay"]["aadhaar"], "[REDACTED:aadhaar]");
        assert_eq!(out["pay"]["pan"], "[REDACTED:pan]");
        assert_eq!(out["num"], "[REDACTED:card]");
        assert_eq!(out["fake_aadhaar"], "2341 2341 2347");
        assert!(paths.contains(&"$['user']['ssn']".to_string()));
        assert!(paths.contains(&"$['cards'][0]".to_string()));
        assert!(!paths.contains(&"$['cards'][1]".to_string()));
    }

    #[test]
    fn encrypt_mode_seals_rule_values_at_their_normalized_paths() {
        // Natively the SDK has no key: its token is `sealed:` and the path it was given.
        let ctx = Context::default()
            .with_config("paths", r#"["$.card", "$.items[*].token"]"#)
            .with_config("mode", "encrypt")
            .with_config("detectors", "none");
        let (out, paths) = run(
            &ctx,
            json!({"card": "4111111111111111", "keep": 1, "items": [{"token": "a"}, {"token": 7}]}),
        );
        assert_eq!(out["card"], "sealed:$['card']");
        assert_eq!(out["items"][1]["token"], "sealed:$['items'][1]['token']");
        assert_eq!(out["keep"], 1);
        assert!(paths.contains(&"$['card']".to_string()), "{paths:?}");
    }

    #[test]
    fn rules_redact_by_path_and_remove_mode_deletes() {
        let ctx = Context::default()
            .with_config("paths", r#"["$.secret", "$.items[*].token"]"#)
            .with_config("mode", "remove")
            .with_config("detectors", "none");
        let (out, paths) = run(
            &ctx,
            json!({"secret": "s", "keep": 1, "items": [{"token": "a", "id": 1}, {"token": "b"}]}),
        );
        assert_eq!(out, json!({"keep": 1, "items": [{"id": 1}, {}]}));
        assert_eq!(paths.len(), 3);
    }

    #[test]
    fn a_renamed_key_never_takes_the_name_of_one_that_stays() {
        let ctx = Context::default();
        let (out, _) = run(
            &ctx,
            json!({"123-45-6789": "A", "[REDACTED:ssn]": "B", "[REDACTED:ssn]#2": "E", "219-09-9999": "C"}),
        );
        assert_eq!(
            out,
            json!({"[REDACTED:ssn]": "B", "[REDACTED:ssn]#2": "E", "[REDACTED:ssn]#3": "A", "[REDACTED:ssn]#4": "C"})
        );
    }

    #[test]
    fn remove_mode_on_a_document_that_is_personal_data_leaves_null() {
        let ctx = Context::default().with_config("mode", "remove");
        let (out, paths) = run(&ctx, json!("123-45-6789"));
        assert_eq!((out, paths), (Value::Null, vec!["$".to_string()]));
    }

    #[test]
    fn hash_mode_is_keyed_and_stable() {
        let ctx = Context::default()
            .with_config("mode", "hash")
            .with_config("hash_key", "k1");
        let (a, _) = run(&ctx, json!({"e": "jane@example.com"}));
        let (b, _) = run(&ctx, json!({"e": "jane@example.com"}));
        let other = Context::default()
            .with_config("mode", "hash")
            .with_config("hash_key", "k2");
        let (c, _) = run(&other, json!({"e": "jane@example.com"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a["e"].as_str().unwrap().starts_with("[email:"));
        assert!(!a["e"].as_str().unwrap().contains("jane"));
    }

    #[test]
    fn escaped_and_duplicate_keys_are_redacted() {
        let body = br#"{"\u0065mail": "jane@example.com", "k": "123-45-6789", "k": "223-45-6789"}"#;
        let settings = Settings::from_context(&Context::default()).unwrap();
        let (out, _) = settings.redact_body(body).unwrap().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("jane"), "{text}");
        assert!(!text.contains("45-6789"), "{text}");
    }

    #[test]
    fn binary_body_fails_closed_and_text_is_scanned() {
        let settings = Settings::from_context(&Context::default()).unwrap();
        assert!(settings.redact_body(&[0xff, 0xfe, 0x00]).is_err());
        let (out, paths) = settings.redact_body(b"ssn=123-45-6789").unwrap().unwrap();
        assert_eq!(out, b"ssn=[REDACTED:ssn]");
        assert_eq!(paths, vec!["$"]);
    }

    #[test]
    fn bad_config_is_an_error() {
        let ctx = Context::default().with_config("mode", "shred");
        assert!(Settings::from_context(&ctx).is_err());
        let ctx = Context::default().with_config("mode", "hash");
        assert!(Settings::from_context(&ctx).is_err());
        let ctx = Context::default().with_config("paths", "$[");
        assert!(Settings::from_context(&ctx).is_err());
    }

    #[test]
    fn keys_holding_personal_data_are_redacted_and_never_recorded() {
        let settings = Settings::from_context(&Context::default()).unwrap();
        let body = br#"{"by_ssn":{"219-09-9999":{"n":1}},"by_mail":{"ada@example.com":2}}"#;
        let (out, paths) = settings.redact_body(body).unwrap().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("219-09") && !text.contains("ada@"), "{text}");
        assert_eq!(paths, vec!["$['by_mail'][*]", "$['by_ssn'][*]"]);
    }

    #[test]
    fn text_is_read_as_its_reader_reads_it_or_refused() {
        let settings = Settings::from_context(&Context::default()).unwrap();
        // JSON lines: each line a document.
        let (out, _) = settings
            .redact_body_as(b"{\"s\":\"536\\u002d22\\u002d8145\"}\n{\"ok\":1}\n", None)
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("8145"));
        // UTF-16 as declared, written back as UTF-16.
        let utf16: Vec<u8> = "ssn 536-22-8145"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let (out, _) = settings
            .redact_body_as(&utf16, Some("text/plain; charset=utf-16le"))
            .unwrap()
            .unwrap();
        let units: Vec<u16> = out
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert!(!String::from_utf16(&units).unwrap().contains("8145"));
        // Undeclared UTF-16, escapes in text, too-deep JSON: refused.
        assert!(settings.redact_body_as(&utf16, Some("text/plain")).is_err());
        assert!(
            settings
                .redact_body(b"ssn 536\\u002d22\\u002d8145")
                .is_err()
        );
        let deep = format!("{}\"536-22-8145\"{}", "[".repeat(200), "]".repeat(200));
        assert!(settings.redact_body(deep.as_bytes()).is_err());
    }
}

//! What a guest reports through `redacted(path)`: validated and capped before it can
//! reach an audit record (catalogue item 54).
//!
//! A report must be an RFC 9535 JSONPath without filter selectors (it says where a
//! value was, it is not a query over values), at most [`MAX_REDACTED_BYTES`] long.
//! Anything else (an SSN passed by mistake, free text, a filter comparing a literal)
//! is dropped and counted, as are reports past [`MAX_REDACTED_PATHS`] or past
//! [`MAX_REDACTED_BYTES`] in total; a repeated path is kept once. An invocation that
//! fails keeps none of its reports ([`crate::Invocation::redacted`]).

use serde_json_path::JsonPath;

/// The most distinct paths one invocation may report: 1,000.
pub const MAX_REDACTED_PATHS: usize = 1_000;
/// The most bytes of path text one invocation may report, all paths together: 64 KiB.
pub const MAX_REDACTED_BYTES: usize = 64 << 10;

/// The redacted paths one invocation reported.
#[derive(Debug, Default)]
pub(crate) struct Redactions {
    pub(crate) paths: Vec<String>,
    bytes: usize,
    pub(crate) dropped: u64,
}

impl Redactions {
    /// Whether [`Redactions::report`] would keep `path` (or already has it).
    pub(crate) fn accepts(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
            || (self.paths.len() < MAX_REDACTED_PATHS
                && self.bytes + path.len() <= MAX_REDACTED_BYTES
                && is_report_path(path))
    }

    /// Keeps `path` if it is a JSONPath within the caps; drops and counts it otherwise.
    pub(crate) fn report(&mut self, path: &str) {
        if self.paths.iter().any(|p| p == path) {
            return;
        }
        if self.paths.len() >= MAX_REDACTED_PATHS
            || self.bytes + path.len() > MAX_REDACTED_BYTES
            || !is_report_path(path)
        {
            self.dropped += 1;
            return;
        }
        self.bytes += path.len();
        self.paths.push(path.to_string());
    }
}

/// An RFC 9535 JSONPath query without filter selectors. Filters are refused before
/// parsing: they are the only recursive part of the grammar, and the only one that
/// carries literal values.
pub(crate) fn is_report_path(path: &str) -> bool {
    path.starts_with('$') && !has_filter(path) && JsonPath::parse(path).is_ok()
}

/// Whether `path` has a `?` outside its quoted names.
fn has_filter(path: &str) -> bool {
    let mut quote = None;
    let mut escaped = false;
    for c in path.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => return true,
            None => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_jsonpaths_without_filters() {
        for ok in [
            "$",
            "$.user.ssn",
            "$['user']['ssn']",
            "$.contacts[*].email",
            "$..ssn",
            "$['a?b']",
            "$[\"it's\"][0]",
            "$.items[1:3]",
        ] {
            assert!(is_report_path(ok), "{ok}");
        }
        for bad in [
            "123-45-6789",
            "ada@example.com",
            "",
            "user.ssn",
            "$.",
            "$[",
            "$.a b",
            "$[?@.ssn == '123-45-6789']",
            "$..[?(@.x)]",
            &format!("$[{}", "?(".repeat(10_000)),
        ] {
            assert!(!is_report_path(bad), "{bad}");
        }
    }

    #[test]
    fn reports_are_capped_deduplicated_and_counted() {
        let mut r = Redactions::default();
        r.report("$.a");
        r.report("$.a");
        r.report("123-45-6789");
        assert_eq!((r.paths.clone(), r.dropped), (vec!["$.a".to_string()], 1));
        for i in 0..MAX_REDACTED_PATHS + 5 {
            r.report(&format!("$.items[{i}]"));
        }
        assert_eq!(r.paths.len(), MAX_REDACTED_PATHS);
        assert_eq!(r.dropped, 1 + 6);

        let mut r = Redactions::default();
        let long = format!("$['{}']", "x".repeat(MAX_REDACTED_BYTES));
        r.report(&long);
        assert_eq!((r.paths.len(), r.dropped), (0, 1));
        let mut total = 0;
        for i in 0.. {
            let path = format!("$['{i}{}']", "y".repeat(1_000));
            if total + path.len() > MAX_REDACTED_BYTES {
                r.report(&path);
                break;
            }
            total += path.len();
            r.report(&path);
        }
        assert_eq!(r.dropped, 2, "the total cap");
    }
}

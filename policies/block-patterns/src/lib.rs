//! `block-patterns`: rejects requests whose path, query or body matches an injection
//! probe, with `400 {"error":"request blocked"}`.
//!
//! Config keys:
//! - `builtin`: comma-separated built-in rule sets, default `sqli,xss,traversal,cmd`
//!   (`none` turns them off);
//! - `patterns`: a JSON array of extra regular expressions (RE2 syntax, linear time,
//!   case-insensitive);
//! - `max_body`: bodies larger than this many bytes are refused with 413 rather than
//!   scanned partially (default 1048576).
//!
//! Path and query are percent-decoded (twice, to catch double encoding) before
//! matching. The log names the rule that matched, never the matched text.

use palisade_sdk::{Action, Context, Error, LogLevel, Policy, Request, Result, log};
use percent_encoding::percent_decode_str;
use regex::RegexSetBuilder;

/// Built-in rule sets: (name, patterns).
pub const BUILTIN: &[(&str, &[&str])] = &[
    (
        "sqli",
        &[
            r"\bunion\b[\s/*]+(all[\s/*]+)?select\b",
            r"'\s*(or|and)\s+'?\d+'?\s*=\s*'?\d+",
            r"'\s*(or|and)\s+'[^']*'\s*=\s*'",
            r";\s*(drop|delete|truncate|alter|insert|update)\s",
            r"\b(sleep|benchmark|pg_sleep)\s*\(",
            r"(--|#|/\*)\s*$",
        ],
    ),
    (
        "xss",
        &[
            r"<\s*script\b",
            r"\bjavascript\s*:",
            r"\bon(error|load|click|mouseover)\s*=",
            r"<\s*(iframe|svg|img)\b[^>]*\bon\w+\s*=",
        ],
    ),
    (
        "traversal",
        &[
            r"(^|[/\\])\.\.([/\\]|$)",
            r"/etc/(passwd|shadow)\b",
            r"\\windows\\win\.ini",
        ],
    ),
    (
        "cmd",
        &[
            r"[;|&`]\s*(cat|ls|id|whoami|curl|wget|nc|bash|sh)\b",
            r"\$\((.*)\)",
        ],
    ),
];

/// Compiled rules with the name of each pattern's set.
pub struct Rules {
    set: regex::RegexSet,
    names: Vec<String>,
    max_body: u64,
}

impl Rules {
    /// Builds the rules from config.
    ///
    /// # Errors
    ///
    /// On an unknown rule set, invalid or oversized pattern, or a bad `max_body`.
    pub fn from_context(ctx: &Context) -> Result<Self> {
        let mut patterns = Vec::new();
        let mut names = Vec::new();
        let builtin = ctx.config("builtin").unwrap_or("sqli,xss,traversal,cmd");
        if builtin != "none" {
            for name in builtin.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let (_, list) = BUILTIN
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| Error::msg(format!("unknown rule set `{name}`")))?;
                for p in *list {
                    patterns.push(p.to_string());
                    names.push(name.to_string());
                }
            }
        }
        if let Some(json) = ctx.config("patterns") {
            let extra: Vec<String> = serde_json::from_str(json).map_err(|e| {
                Error::msg(format!("`patterns` must be a JSON array of strings: {e}"))
            })?;
            for (i, p) in extra.into_iter().enumerate() {
                patterns.push(p);
                names.push(format!("patterns[{i}]"));
            }
        }
        let set = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .dfa_size_limit(2 << 20)
            .build()
            .map_err(|e| Error::msg(format!("invalid pattern: {e}")))?;
        let max_body = match ctx.config("max_body") {
            Some(v) => v
                .parse()
                .map_err(|_| Error::msg("`max_body` must be a number"))?,
            None => 1 << 20,
        };
        Ok(Rules {
            set,
            names,
            max_body,
        })
    }

    /// The name of the first rule set matching `text`.
    pub fn matches(&self, text: &str) -> Option<&str> {
        self.set
            .matches(text)
            .iter()
            .next()
            .map(|i| self.names[i].as_str())
    }
}

fn decode(s: &str) -> String {
    let once = percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    percent_decode_str(&once).decode_utf8_lossy().into_owned()
}

/// The policy.
pub struct BlockPatterns;

impl Policy for BlockPatterns {
    fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        let rules = Rules::from_context(ctx)?;
        if req.body_len() > rules.max_body {
            log(LogLevel::Info, "blocked: body larger than max_body");
            return Ok(Action::deny(413, "request body too large"));
        }
        let hit = [("path", decode(&req.path)), ("query", decode(&req.query))]
            .into_iter()
            .find_map(|(part, text)| rules.matches(&text).map(|rule| (part, rule.to_string())));
        let hit = match hit {
            Some(h) => Some(h),
            None => {
                let body = String::from_utf8_lossy(req.body()).into_owned();
                rules.matches(&body).map(|rule| ("body", rule.to_string()))
            }
        };
        match hit {
            Some((part, rule)) => {
                log(
                    LogLevel::Info,
                    &format!("blocked: {rule} matched in {part}"),
                );
                Ok(Action::deny(400, "request blocked"))
            }
            None => Ok(Action::Continue(req)),
        }
    }
}

palisade_sdk::export!(BlockPatterns);

#[cfg(test)]
mod tests {
    use palisade_sdk::testing;

    use super::*;

    fn status(ctx: &Context, req: Request) -> Option<u16> {
        testing::request::<BlockPatterns>(ctx, req)
            .action
            .unwrap()
            .into_respond()
            .map(|r| r.status)
    }

    #[test]
    fn blocks_probes_in_query_path_and_body() {
        let ctx = Context::default();
        assert_eq!(
            status(
                &ctx,
                Request::get("/items").with_query("id=1%27%20OR%20%271%27%3D%271")
            ),
            Some(400)
        );
        assert_eq!(
            status(
                &ctx,
                Request::get("/items").with_query("q=1 UNION ALL SELECT password")
            ),
            Some(400)
        );
        assert_eq!(
            status(
                &ctx,
                Request::get("/static/%252e%252e/%252e%252e/etc/passwd")
            ),
            Some(400)
        );
        assert_eq!(
            status(
                &ctx,
                Request::new("POST", "/c").with_body("<ScRiPt>alert(1)</script>")
            ),
            Some(400)
        );
    }

    #[test]
    fn ordinary_requests_pass() {
        let ctx = Context::default();
        assert_eq!(
            status(
                &ctx,
                Request::get("/items").with_query("q=union+station&sort=name")
            ),
            None
        );
        assert_eq!(
            status(
                &ctx,
                Request::new("POST", "/c")
                    .with_body(r#"{"name":"O'Brien","note":"select a seat"}"#)
            ),
            None
        );
    }

    #[test]
    fn custom_patterns_oversize_body_and_bad_config() {
        let ctx = Context::default()
            .with_config("builtin", "none")
            .with_config("patterns", r#"["forbidden-word"]"#);
        assert_eq!(
            status(&ctx, Request::get("/").with_query("x=FORBIDDEN-WORD")),
            Some(400)
        );
        let ctx = Context::default().with_config("max_body", "4");
        assert_eq!(
            status(&ctx, Request::new("POST", "/").with_body("12345")),
            Some(413)
        );
        assert!(
            Rules::from_context(&Context::default().with_config("patterns", r#"["(unclosed"]"#))
                .is_err()
        );
        assert!(
            Rules::from_context(
                &Context::default().with_config("patterns", r#"["a{1000}{1000}"]"#)
            )
            .is_err()
        );
    }
}

//! RFC 9535's `match()` and `search()` functions, with I-Regexp (RFC 9485) patterns and
//! bounded costs.
//!
//! `serde_json_path`'s own `regex` feature stays off: it compiles a new, unbounded
//! `regex::Regex` on every call and accepts the whole `regex` crate syntax. These two
//! functions are registered through its `functions` feature instead (its parser looks up
//! registered functions before its built-in ones), and:
//!
//! - read the pattern as I-Regexp: [`translate`] parses RFC 9485's grammar and writes the
//!   equivalent `regex` crate pattern (`.` is `[^\n\r]`, groups do not capture, `match()`
//!   is anchored at both ends). A string that is not an I-Regexp makes the function
//!   false (RFC 9535 §2.4.6, §2.4.7), as does one over the bounds below;
//! - compile with the `regex` crate, whose matching time is linear in the text, under
//!   [`SIZE_LIMIT`] and [`DFA_SIZE_LIMIT`];
//! - cache what they compile per thread, in small LRU maps: one for patterns written in
//!   a path (string literals) and one for patterns read from the document (RFC 9535
//!   allows `match(@.a, @.b)`, where the document chooses the pattern). Within one
//!   evaluation of a [`Selection`](crate::Selection) at most
//!   [`DOCUMENT_COMPILES_PER_EVALUATION`] document patterns are compiled; others not
//!   already cached make the function false. Only a document that supplies its own
//!   patterns can reach that limit, and such a document decides what its patterns match
//!   anyway.
//!
//! `^` and `$` outside a character class are assertions (start and end of the string),
//! as in RFC 9485 §5's mappings to ECMAScript, PCRE and RE2 and in the Compliance Test
//! Suite, although RFC 9485's grammar also reads them as ordinary characters; `\^` and
//! `[$]` stand for the characters.

use std::cell::RefCell;
use std::fmt::Write as _;

use hashlink::LruCache;
use regex::{Regex, RegexBuilder};
use serde_json::Value;
use serde_json_path::functions::{LogicalType, ValueType};

/// The longest pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 1024;
/// The largest count in a `{n}`, `{n,}` or `{n,m}` quantifier.
pub const MAX_REPETITION: u32 = 1000;
/// The deepest nesting of groups.
pub const MAX_GROUP_DEPTH: usize = 32;
/// `regex::RegexBuilder::size_limit`: the compiled program's size, in bytes.
pub const SIZE_LIMIT: usize = 256 << 10;
/// `regex::RegexBuilder::dfa_size_limit`: each regex's lazy-DFA cache, in bytes.
pub const DFA_SIZE_LIMIT: usize = 512 << 10;
/// Compiled patterns kept per thread and function for patterns written in paths.
pub const RULE_CACHE: usize = 32;
/// Compiled patterns kept per thread and function for patterns read from documents.
pub const DOCUMENT_CACHE: usize = 8;
/// Document patterns compiled in one evaluation of a [`Selection`](crate::Selection).
pub const DOCUMENT_COMPILES_PER_EVALUATION: usize = 8;

#[serde_json_path::function(name = "match")]
fn match_function(value: ValueType<'_>, pattern: ValueType<'_>) -> LogicalType {
    evaluate(Mode::Match, &value, &pattern)
}

#[serde_json_path::function(name = "search")]
fn search_function(value: ValueType<'_>, pattern: ValueType<'_>) -> LogicalType {
    evaluate(Mode::Search, &value, &pattern)
}

/// What a pattern must match: the whole string (`match()`) or some substring (`search()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Match = 0,
    Search = 1,
}

/// Where a pattern comes from: the path's text, or the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Rule,
    Document,
}

fn evaluate(mode: Mode, value: &ValueType<'_>, pattern: &ValueType<'_>) -> LogicalType {
    let (Some(Value::String(text)), Some(Value::String(source))) =
        (value.as_value(), pattern.as_value())
    else {
        return LogicalType::False;
    };
    // A string literal is the one argument that evaluates to a value rather than a node.
    let origin = match pattern {
        ValueType::Value(_) => Origin::Rule,
        ValueType::Node(_) | ValueType::Nothing => Origin::Document,
    };
    CACHE
        .with_borrow_mut(|cache| cache.is_match(mode, origin, source, text))
        .into()
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new());
}

/// Runs `evaluate` (one evaluation of a selection) with a fresh budget of
/// [`DOCUMENT_COMPILES_PER_EVALUATION`]; outside it, document patterns are not budgeted.
pub(crate) fn with_compile_budget<R>(evaluate: impl FnOnce() -> R) -> R {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CACHE.try_with(|cache| cache.borrow_mut().budget = self.0);
        }
    }
    let _restore = Restore(CACHE.with_borrow_mut(|cache| {
        cache.budget.replace(DOCUMENT_COMPILES_PER_EVALUATION)
    }));
    evaluate()
}

/// A thread's compiled patterns, by origin and [`Mode`]. `None` is a pattern that did not
/// compile within the limits (kept too: trying again would cost the same).
struct Cache {
    rule: [LruCache<Box<str>, Option<Regex>>; 2],
    document: [LruCache<Box<str>, Option<Regex>>; 2],
    /// Document patterns the current evaluation may still compile (`None`: no limit).
    budget: Option<usize>,
    /// Patterns compiled on this thread, for tests.
    compiles: usize,
}

impl Cache {
    fn new() -> Self {
        Cache {
            rule: [LruCache::new(RULE_CACHE), LruCache::new(RULE_CACHE)],
            document: [LruCache::new(DOCUMENT_CACHE), LruCache::new(DOCUMENT_CACHE)],
            budget: None,
            compiles: 0,
        }
    }

    fn is_match(&mut self, mode: Mode, origin: Origin, pattern: &str, text: &str) -> bool {
        if too_long(pattern) {
            return false;
        }
        let cache = match origin {
            Origin::Rule => &mut self.rule[mode as usize],
            Origin::Document => &mut self.document[mode as usize],
        };
        if let Some(compiled) = cache.get(pattern) {
            return compiled.as_ref().is_some_and(|regex| regex.is_match(text));
        }
        // Not an I-Regexp: cheap to find again, so not cached.
        let Some(translated) = translate(pattern, mode) else {
            return false;
        };
        if origin == Origin::Document {
            match &mut self.budget {
                Some(0) => return false,
                Some(left) => *left -= 1,
                None => {}
            }
        }
        self.compiles += 1;
        let compiled = RegexBuilder::new(&translated)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .ok();
        let found = compiled.as_ref().is_some_and(|regex| regex.is_match(text));
        cache.insert(pattern.into(), compiled);
        found
    }
}

/// Patterns compiled on this thread so far.
#[cfg(test)]
pub(crate) fn compiles() -> usize {
    CACHE.with_borrow(|cache| cache.compiles)
}

/// Document patterns cached on this thread for `mode`.
#[cfg(test)]
pub(crate) fn document_patterns_cached(mode: Mode) -> usize {
    CACHE.with_borrow(|cache| cache.document[mode as usize].len())
}

fn too_long(pattern: &str) -> bool {
    pattern.chars().nth(MAX_PATTERN_CHARS).is_some()
}

/// The `regex` crate pattern equivalent to the I-Regexp `pattern` applied as `mode` says;
/// `None` if `pattern` is not an I-Regexp or exceeds [`MAX_PATTERN_CHARS`],
/// [`MAX_REPETITION`] or [`MAX_GROUP_DEPTH`].
pub(crate) fn translate(pattern: &str, mode: Mode) -> Option<String> {
    if too_long(pattern) {
        return None;
    }
    let mut translator = Translator {
        rest: pattern,
        out: String::with_capacity(2 * pattern.len() + 10),
        depth: 0,
    };
    let (open, close) = match mode {
        Mode::Match => (r"\A(?:", r")\z"),
        Mode::Search => ("(?:", ")"),
    };
    translator.out.push_str(open);
    translator.regexp()?;
    // What stopped the top-level branch can only be a `)` without its `(`.
    if !translator.rest.is_empty() {
        return None;
    }
    translator.out.push_str(close);
    Some(translator.out)
}

/// A recursive-descent reader of RFC 9485 §5's ABNF (the rules are quoted on the
/// methods) that writes the `regex` crate equivalent as it goes.
struct Translator<'p> {
    rest: &'p str,
    out: String,
    depth: usize,
}

/// An escape after `\`: one character, or a Unicode general category.
enum Escape<'p> {
    Char(char),
    Category { complement: bool, name: &'p str },
}

impl<'p> Translator<'p> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// `i-regexp = branch *( "|" branch )`
    fn regexp(&mut self) -> Option<()> {
        self.branch()?;
        while self.eat('|') {
            self.out.push('|');
            self.branch()?;
        }
        Some(())
    }

    /// `branch = *piece`
    fn branch(&mut self) -> Option<()> {
        while !matches!(self.peek(), None | Some('|' | ')')) {
            self.piece()?;
        }
        Some(())
    }

    /// `piece = atom [ quantifier ]`
    fn piece(&mut self) -> Option<()> {
        self.atom()?;
        self.quantifier()
    }

    /// `quantifier = ( "*" / "+" / "?" ) / range-quantifier`
    /// `range-quantifier = "{" QuantExact [ "," [ QuantExact ] ] "}"`
    fn quantifier(&mut self) -> Option<()> {
        match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.bump();
                self.out.push(c);
            }
            Some('{') => {
                self.bump();
                let min = self.count()?;
                let max = match self.eat(',') {
                    false => Some(min),
                    true if self.peek() == Some('}') => None,
                    true => Some(self.count()?),
                };
                if !self.eat('}') || max.is_some_and(|max| max < min) {
                    return None;
                }
                let _ = match max {
                    Some(max) if max == min => write!(self.out, "{{{min}}}"),
                    Some(max) => write!(self.out, "{{{min},{max}}}"),
                    None => write!(self.out, "{{{min},}}"),
                };
            }
            _ => {}
        }
        Some(())
    }

    /// `QuantExact = 1*%x30-39`, at most [`MAX_REPETITION`].
    fn count(&mut self) -> Option<u32> {
        let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, rest) = self.rest.split_at(digits);
        self.rest = rest;
        number.parse().ok().filter(|&n| n <= MAX_REPETITION)
    }

    /// `atom = NormalChar / charClass / ( "(" i-regexp ")" )`
    /// `charClass = "." / SingleCharEsc / charClassEsc / charClassExpr`
    fn atom(&mut self) -> Option<()> {
        match self.bump()? {
            '(' => {
                self.depth += 1;
                if self.depth > MAX_GROUP_DEPTH {
                    return None;
                }
                self.out.push_str("(?:");
                self.regexp()?;
                if !self.eat(')') {
                    return None;
                }
                self.out.push(')');
                self.depth -= 1;
            }
            '.' => self.out.push_str(r"[^\n\r]"),
            '[' => self.class()?,
            '\\' => {
                let escape = self.escape()?;
                self.push_escape(&escape);
            }
            // Assertions, see the module's documentation.
            c @ ('^' | '$') => self.out.push(c),
            c if is_normal_char(c) => push_char(&mut self.out, c),
            _ => return None,
        }
        Some(())
    }

    /// After `\`:
    /// `SingleCharEsc = "\" ( %x28-2B / "-" / "." / "?" / %x5B-5E / %s"n" / %s"r" / %s"t" / %x7B-7D )`
    /// `catEsc = %s"\p{" charProp "}"`, `complEsc = %s"\P{" charProp "}"`
    fn escape(&mut self) -> Option<Escape<'p>> {
        let c = self.bump()?;
        let char = match c {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '(' | ')' | '*' | '+' | '-' | '.' | '?' | '[' | '\\' | ']' | '^' | '{' | '|' | '}' => c,
            'p' | 'P' => {
                let body = self.rest.strip_prefix('{')?;
                let (name, rest) = body.split_once('}')?;
                if !is_category(name) {
                    return None;
                }
                self.rest = rest;
                return Some(Escape::Category {
                    complement: c == 'P',
                    name,
                });
            }
            _ => return None,
        };
        Some(Escape::Char(char))
    }

    fn push_escape(&mut self, escape: &Escape<'_>) {
        match *escape {
            Escape::Char(c) => push_char(&mut self.out, c),
            Escape::Category { complement, name } => {
                let p = if complement { 'P' } else { 'p' };
                let _ = write!(self.out, r"\{p}{{{name}}}");
            }
        }
    }

    /// After `[`: `charClassExpr = "[" [ "^" ] ( "-" / CCE1 ) *CCE1 [ "-" ] "]"`
    fn class(&mut self) -> Option<()> {
        self.out.push('[');
        if self.eat('^') {
            self.out.push('^');
        }
        let mut first = true;
        loop {
            match self.peek()? {
                ']' if !first => {
                    self.bump();
                    break;
                }
                '-' => {
                    self.bump();
                    // A `-` of its own is the first or the last thing in the class.
                    if !first && self.peek() != Some(']') {
                        return None;
                    }
                    push_char(&mut self.out, '-');
                }
                _ => self.class_item()?,
            }
            first = false;
        }
        self.out.push(']');
        Some(())
    }

    /// `CCE1 = ( CCchar [ "-" CCchar ] ) / charClassEsc`
    fn class_item(&mut self) -> Option<()> {
        let low = match self.class_char()? {
            Escape::Char(c) => c,
            category => {
                self.push_escape(&category);
                return Some(());
            }
        };
        // `a-]`: the `-` ends the class rather than making a range.
        if self.rest.starts_with('-') && !self.rest[1..].starts_with(']') {
            self.bump();
            let Escape::Char(high) = self.class_char()? else {
                return None;
            };
            if high < low {
                return None;
            }
            push_char(&mut self.out, low);
            self.out.push('-');
            push_char(&mut self.out, high);
        } else {
            push_char(&mut self.out, low);
        }
        Some(())
    }

    /// `CCchar = ( %x00-2C / %x2E-5A / %x5E-10FFFF ) / SingleCharEsc`, or a
    /// `charClassEsc` for the caller to refuse where it is no `CCchar`.
    fn class_char(&mut self) -> Option<Escape<'p>> {
        match self.bump()? {
            '\\' => self.escape(),
            '-' | '[' | ']' => None,
            c => Some(Escape::Char(c)),
        }
    }
}

/// `NormalChar`: every character but `( ) * + . ? [ \ ] { | }`.
fn is_normal_char(c: char) -> bool {
    !matches!(
        c,
        '(' | ')' | '*' | '+' | '.' | '?' | '[' | '\\' | ']' | '{' | '|' | '}'
    )
}

/// `IsCategory`: `L`, `M`, `N`, `P`, `Z`, `S` or `C`, alone or with one of its subcategories.
fn is_category(name: &str) -> bool {
    let mut chars = name.chars();
    let (Some(major), minor, None) = (chars.next(), chars.next(), chars.next()) else {
        return false;
    };
    let minors = match major {
        'L' => "lmotu",
        'M' => "cen",
        'N' => "dlo",
        'P' => "cdefios",
        'Z' => "lps",
        'S' => "ckmo",
        'C' => "cfno",
        _ => return false,
    };
    minor.is_none_or(|m| minors.contains(m))
}

/// One literal character, as `\x{..}` unless it is a letter or digit (so that no
/// character means anything to the `regex` crate, inside a class or out).
fn push_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || !c.is_ascii() {
        out.push(c);
    } else {
        let _ = write!(out, r"\x{{{:X}}}", u32::from(c));
    }
}

#[cfg(test)]
mod tests;

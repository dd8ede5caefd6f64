//! RFC 9535's `match()` and `search()` functions, with I-Regexp (RFC 9485) patterns and
//! bounded costs.
//!
//! `serde_json_path`'s own `regex` feature stays off: it compiles a new, unbounded
//! `regex::Regex` on every call and accepts the whole `regex` crate syntax. These two
//! functions are registered through its `functions` feature instead (its parser looks up
//! registered functions before its built-in ones). They:
//!
//! - read the pattern as an I-Regexp, and translate it to the `regex` crate's syntax (`.`
//!   becomes `[^\n\r]`, groups do not capture, `match()` is anchored at both ends). A
//!   string that is not an I-Regexp makes the function false (RFC 9535 §2.4.6, §2.4.7), and
//!   so does one beyond [`MAX_PATTERN_CHARS`], [`MAX_REPETITION`] or [`MAX_GROUP_DEPTH`];
//! - compile it with the `regex` crate under [`SIZE_LIMIT`] and [`DFA_SIZE_LIMIT`] (false
//!   if it does not fit). Matching takes time linear in the string's length;
//! - keep what they compiled, per thread, in small LRU maps: [`RULE_CACHE`] patterns
//!   written in paths (string literals) and [`DOCUMENT_CACHE`] patterns read from
//!   documents, per function. A pattern used on every element of a large array is compiled
//!   once.
//!
//! RFC 9535 also lets the document supply the pattern (`$[?match(@.a, @.b)]`), and then it
//! supplies both the pattern and the string. Matching time is the string's length times a
//! factor that grows with the compiled program (near [`SIZE_LIMIT`], a pattern made to
//! defeat the lazy DFA costs about 20 µs per byte in a release build), so within one
//! evaluation of a [`Selection`](crate::Selection), patterns read from the document may
//! compile [`DOCUMENT_COMPILES_PER_EVALUATION`] times and match
//! [`DOCUMENT_WORK_PER_EVALUATION`] units of work: a string's length in bytes times the
//! pattern's weight (the positions of its automaton, counting a Unicode category as 8). A
//! document pattern beyond either makes the function false. That changes nothing a
//! document could not change itself: whoever writes the pattern decides what it matches.
//!
//! Per thread, at most `2 × (RULE_CACHE + DOCUMENT_CACHE)` regexes are kept; each holds at
//! most two programs of [`SIZE_LIMIT`] (forward and reverse) and grows a lazy-DFA cache of
//! at most [`DFA_SIZE_LIMIT`], so the document patterns' share is at most about 20 MiB and
//! typically a few KiB.
//!
//! `^` and `$` outside a character class are assertions (start and end of the string), as
//! in RFC 9485 §5's mappings to ECMAScript, PCRE and RE2 and in the Compliance Test Suite,
//! although RFC 9485's grammar reads them as ordinary characters; `\^` and `[$]` are the
//! characters.

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
/// `regex::RegexBuilder::dfa_size_limit`: a regex's lazy-DFA cache, in bytes.
pub const DFA_SIZE_LIMIT: usize = 512 << 10;
/// Compiled patterns written in paths kept per thread and function.
pub const RULE_CACHE: usize = 32;
/// Compiled patterns read from documents kept per thread and function.
pub const DOCUMENT_CACHE: usize = 8;
/// Patterns read from the document compiled in one evaluation of a selection.
pub const DOCUMENT_COMPILES_PER_EVALUATION: usize = 8;
/// String bytes times pattern weight matched by patterns read from the document in one
/// evaluation of a selection: at most about a tenth of a second in a release build.
pub const DOCUMENT_WORK_PER_EVALUATION: u64 = 1 << 24;
/// The weight of a Unicode category (`\p{..}`, `\P{..}`, or a class with one): its
/// automaton has many states.
const CATEGORY_WEIGHT: u64 = 8;

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

/// Runs `evaluate` (one evaluation of a selection) with a fresh [`Budget`] for the
/// patterns read from the document; outside it, they are not budgeted.
pub(crate) fn with_budget<R>(evaluate: impl FnOnce() -> R) -> R {
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CACHE.try_with(|cache| cache.borrow_mut().budget = self.0);
        }
    }
    let fresh = Budget {
        compiles: DOCUMENT_COMPILES_PER_EVALUATION,
        work: DOCUMENT_WORK_PER_EVALUATION,
    };
    let _restore = Restore(CACHE.with_borrow_mut(|cache| cache.budget.replace(fresh)));
    evaluate()
}

/// What patterns read from the document may still cost in the current evaluation.
#[derive(Debug, Clone, Copy)]
struct Budget {
    compiles: usize,
    work: u64,
}

/// A compiled pattern and its weight.
struct Compiled {
    regex: Regex,
    weight: u64,
}

/// A thread's compiled patterns, by origin and [`Mode`]. `None` is an I-Regexp that did
/// not compile within the limits (kept: trying again would cost the same).
struct Cache {
    rule: [LruCache<Box<str>, Option<Compiled>>; 2],
    document: [LruCache<Box<str>, Option<Compiled>>; 2],
    budget: Option<Budget>,
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
        let (cache, mut budget) = match origin {
            Origin::Rule => (&mut self.rule[mode as usize], None),
            Origin::Document => (&mut self.document[mode as usize], self.budget.as_mut()),
        };
        if let Some(compiled) = cache.get(pattern) {
            return run(compiled.as_ref(), budget, text);
        }
        // Not an I-Regexp: cheap to find again, so not cached.
        let Some(Translation { regex, weight }) = translate(pattern, mode) else {
            return false;
        };
        if let Some(budget) = budget.as_deref_mut() {
            if budget.compiles == 0 {
                return false;
            }
            budget.compiles -= 1;
        }
        self.compiles += 1;
        let compiled = RegexBuilder::new(&regex)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .ok()
            .map(|regex| Compiled { regex, weight });
        let found = run(compiled.as_ref(), budget, text);
        cache.insert(pattern.into(), compiled);
        found
    }
}

/// Whether `compiled` matches `text`, if `budget` (for a pattern read from the document)
/// allows the work.
fn run(compiled: Option<&Compiled>, budget: Option<&mut Budget>, text: &str) -> bool {
    let Some(compiled) = compiled else {
        return false;
    };
    if let Some(budget) = budget {
        let length = u64::try_from(text.len()).unwrap_or(u64::MAX);
        let work = compiled.weight.saturating_mul(length);
        if work > budget.work {
            return false;
        }
        budget.work -= work;
    }
    compiled.regex.is_match(text)
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

/// An I-Regexp in the `regex` crate's syntax.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Translation {
    pub(crate) regex: String,
    /// An upper bound on the positions of the pattern's automaton (the NFA states that can
    /// be live at once), a Unicode category counting [`CATEGORY_WEIGHT`]: the factor by which
    /// matching time grows with the string's length.
    pub(crate) weight: u64,
}

/// The I-Regexp `pattern` applied as `mode` says, in the `regex` crate's syntax; `None` if
/// `pattern` is not an I-Regexp or exceeds [`MAX_PATTERN_CHARS`], [`MAX_REPETITION`] or
/// [`MAX_GROUP_DEPTH`].
pub(crate) fn translate(pattern: &str, mode: Mode) -> Option<Translation> {
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
    let weight = translator.regexp()?;
    // What stopped the top-level branch can only be a `)` without its `(`.
    if !translator.rest.is_empty() {
        return None;
    }
    translator.out.push_str(close);
    Some(Translation {
        regex: translator.out,
        weight,
    })
}

/// A recursive-descent reader of RFC 9485 §5's ABNF (each method quotes its rule) that
/// writes the `regex` crate equivalent as it goes and returns what it read's weight.
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
    fn regexp(&mut self) -> Option<u64> {
        let mut weight = self.branch()?;
        while self.eat('|') {
            self.out.push('|');
            weight = weight.saturating_add(self.branch()?);
        }
        Some(weight)
    }

    /// `branch = *piece`
    fn branch(&mut self) -> Option<u64> {
        let mut weight = 0u64;
        while !matches!(self.peek(), None | Some('|' | ')')) {
            weight = weight.saturating_add(self.piece()?);
        }
        Some(weight)
    }

    /// `piece = atom [ quantifier ]`
    fn piece(&mut self) -> Option<u64> {
        let atom = self.atom()?;
        let copies = self.quantifier()?;
        Some(atom.saturating_mul(copies))
    }

    /// `quantifier = ( "*" / "+" / "?" ) / range-quantifier`
    /// `range-quantifier = "{" QuantExact [ "," [ QuantExact ] ] "}"`
    ///
    /// Returns how many copies of the atom the automaton holds.
    fn quantifier(&mut self) -> Option<u64> {
        match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.bump();
                self.out.push(c);
                Some(1)
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
                Some(max.map_or(u64::from(min) + 1, u64::from))
            }
            _ => Some(1),
        }
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
    fn atom(&mut self) -> Option<u64> {
        let weight = match self.bump()? {
            '(' => {
                self.depth += 1;
                if self.depth > MAX_GROUP_DEPTH {
                    return None;
                }
                self.out.push_str("(?:");
                let weight = self.regexp()?;
                if !self.eat(')') {
                    return None;
                }
                self.out.push(')');
                self.depth -= 1;
                weight
            }
            '.' => {
                self.out.push_str(r"[^\n\r]");
                1
            }
            '[' => self.class()?,
            '\\' => {
                let escape = self.escape()?;
                self.push_escape(&escape)
            }
            // Assertions, see the module's documentation.
            c @ ('^' | '$') => {
                self.out.push(c);
                1
            }
            c if is_normal_char(c) => {
                push_char(&mut self.out, c);
                1
            }
            _ => return None,
        };
        Some(weight)
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

    /// Writes `escape`; returns its weight.
    fn push_escape(&mut self, escape: &Escape<'_>) -> u64 {
        match *escape {
            Escape::Char(c) => {
                push_char(&mut self.out, c);
                1
            }
            Escape::Category { complement, name } => {
                let p = if complement { 'P' } else { 'p' };
                let _ = write!(self.out, r"\{p}{{{name}}}");
                CATEGORY_WEIGHT
            }
        }
    }

    /// After `[`: `charClassExpr = "[" [ "^" ] ( "-" / CCE1 ) *CCE1 [ "-" ] "]"`
    fn class(&mut self) -> Option<u64> {
        self.out.push('[');
        if self.eat('^') {
            self.out.push('^');
        }
        let mut weight = 1;
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
                _ => weight = weight.max(self.class_item()?),
            }
            first = false;
        }
        self.out.push(']');
        Some(weight)
    }

    /// `CCE1 = ( CCchar [ "-" CCchar ] ) / charClassEsc`
    fn class_item(&mut self) -> Option<u64> {
        let low = match self.class_char()? {
            Escape::Char(c) => c,
            category => return Some(self.push_escape(&category)),
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
        Some(1)
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

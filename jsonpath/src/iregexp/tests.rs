//! `match()` and `search()`: I-Regexp semantics, and the bounds on hostile patterns.
//!
//! Most tests put the pattern in the document (`$[?match(@.text, @.pattern)]`), so that it
//! needs no escaping and is bounded as a document's pattern is. Each test fails if the
//! defence it names is removed; where the `regex` crate alone would match, the test says so.

use serde_json::{Value, json};

use super::*;
use crate::{Outcome, Selection};

/// The values `paths` select in `doc`, in document order.
fn select(paths: &[&str], doc: &Value) -> Vec<Value> {
    let mut doc = doc.clone();
    let mut values = Vec::new();
    Selection::parse(paths).unwrap().edit(&mut doc, &mut |v| {
        values.push(v.clone());
        Outcome::Keep
    });
    values.reverse();
    values
}

/// What `match()` (or `search()`) says of `text` and the document's `pattern`.
fn test(mode: Mode, pattern: &str, text: &str) -> bool {
    let path = match mode {
        Mode::Match => "$[?match(@.text, @.pattern)]",
        Mode::Search => "$[?search(@.text, @.pattern)]",
    };
    let doc = json!([{"text": text, "pattern": pattern}]);
    !select(&[path], &doc).is_empty()
}

fn matches(pattern: &str, text: &str) -> bool {
    test(Mode::Match, pattern, text)
}

fn search(pattern: &str, text: &str) -> bool {
    test(Mode::Search, pattern, text)
}

/// What the `regex` crate alone says of the pattern, anchored as `match()` anchors it.
fn regex_crate_matches(pattern: &str, text: &str) -> bool {
    Regex::new(&format!(r"\A(?:{pattern})\z")).is_ok_and(|r| r.is_match(text))
}

#[test]
fn a_pattern_over_the_length_limit_is_false_without_compiling() {
    let at_limit = "a".repeat(MAX_PATTERN_CHARS);
    assert!(matches(&at_limit, &at_limit));
    let over = "a".repeat(MAX_PATTERN_CHARS + 1);
    assert!(regex_crate_matches(&over, &over));
    let before = compiles();
    assert!(!matches(&over, &over));
    assert!(!search(&over, &over));
    assert_eq!(compiles(), before);
    // Characters are counted, not bytes.
    let wide = "é".repeat(MAX_PATTERN_CHARS);
    assert!(matches(&wide, &wide));
}

#[test]
fn a_repetition_count_over_the_limit_is_false() {
    let a = |n: usize| "a".repeat(n);
    assert!(!matches("a{99999}", &a(99_999)));
    assert!(!matches("a{99999999999999999999}", "a"));
    // The count alone refuses these: the `regex` crate compiles them within the size limit.
    for pattern in ["a{1001}", "a{1001,}", "a{0,1001}"] {
        let builder = RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
            .size_limit(SIZE_LIMIT)
            .build();
        assert!(builder.is_ok_and(|r| r.is_match(&a(1001))), "{pattern}");
        assert!(!matches(pattern, &a(1001)), "{pattern}");
    }
    assert!(matches("a{1000}", &a(1000)));
    assert!(matches("a{1000,}", &a(1001)));
    assert!(matches("a{0,1000}", &a(1000)));
    assert!(matches("a{2,2}", "aa"));
    assert!(!matches("a{2,1}", "a"));
}

#[test]
fn a_program_over_the_size_limit_is_false() {
    // Each `\p{L}` is a large automaton: fifty are over `SIZE_LIMIT`, not the default.
    let letters = "a".repeat(50);
    assert!(regex_crate_matches(r"\p{L}{50}", &letters));
    assert!(!matches(r"\p{L}{50}", &letters));
    assert!(matches(r"\p{L}{3}", "abc"));
}

#[test]
fn groups_nested_too_deep_are_false() {
    let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
    assert!(matches(&nested(MAX_GROUP_DEPTH), "a"));
    assert!(regex_crate_matches(&nested(MAX_GROUP_DEPTH + 1), "a"));
    assert!(!matches(&nested(MAX_GROUP_DEPTH + 1), "a"));
}

#[test]
fn regex_crate_syntax_that_is_not_i_regexp_is_false() {
    // Syntax the `regex` crate matches.
    for (pattern, text) in [
        (r"\d", "1"),
        (r"\D", "a"),
        (r"\x41", "A"),
        (r"\u{41}", "A"),
        (r"\pL", "a"),
        (r"\p{Letter}", "a"),
        (r"[\d]", "1"),
        (r"[[:alpha:]]", "a"),
        (r"[a-z&&[^b]]", "a"),
        (r"[a-z--b]", "a"),
        ("(?:a)", "a"),
        ("(?<n>a)", "a"),
        ("a*?", "a"),
        ("a+?", "a"),
        ("a??", ""),
        ("a{1,2}?", "a"),
        ("a**", "a"),
        (r"\Aa", "a"),
        (r"a\z", "a"),
        (r"\$", "$"),
        ("a}", "a}"),
        ("]", "]"),
        ("[]a]", "a"),
        ("[a-z-0]", "a"),
    ] {
        assert!(regex_crate_matches(pattern, text), "{pattern} {text:?}");
        assert!(!matches(pattern, text), "{pattern} {text:?}");
        assert!(!search(pattern, text), "{pattern} {text:?}");
    }
    // Syntax the `regex` crate refuses too, or matches only with features this crate does
    // not ask for (`\w`, `\s`, `\b`, `(?i)`: `unicode-perl`, `unicode-case`).
    for (pattern, text) in [
        (r"\w", "a"),
        (r"\s", " "),
        (r"\ba", "a"),
        ("(?i)a", "A"),
        (r"(a)\1", "aa"),
        ("(?=a)a", "a"),
        ("(?!b)a", "a"),
        ("(?<=a)a", "a"),
        (r"\p{Greek}", "α"),
        ("a{,2}", "a"),
        ("a{1", "a{1"),
        ("[z-a]", "a"),
        (r"[a-\p{L}]", "a"),
        ("(", "("),
        ("a)", "a)"),
        ("[a", "[a"),
        ("*a", "a"),
    ] {
        assert!(!matches(pattern, text), "{pattern} {text:?}");
        assert!(!search(pattern, text), "{pattern} {text:?}");
    }
}

#[test]
fn i_regexp_syntax_translates() {
    for (pattern, yes, no) in [
        ("a|bc", "bc", "abc"),
        ("(a|b)+c?", "abba", "abc d"),
        ("[-a]", "-", "b"),
        ("[a-]", "-", "b"),
        ("[--]", "-", "a"),
        ("[^-a]", "b", "-"),
        (r"[\]-]", "]", "a"),
        (r"[\^\[\\]", "\\", "a"),
        (r"[a-c\p{Nd}]", "٣", "d"),
        (r"[^\P{Lu}]", "Ж", "ж"),
        (r"\p{Lu}\P{Lu}", "Жж", "ЖЖ"),
        (r"a\.b\*\n\t\r", "a.b*\n\t\r", "axb*\n\t\r"),
        (r"\(\)\{\}\|\?\+\-", "(){}|?+-", ""),
        ("x{2,}y{0,1}", "xxx", "x"),
        ("&~<>`#'\"%,/:;=@_ !", "&~<>`#'\"%,/:;=@_ !", ""),
        ("", "", "a"),
        ("a|", "", "b"),
        ("()", "", "a"),
    ] {
        assert!(matches(pattern, yes), "{pattern} {yes:?}");
        assert!(!matches(pattern, no), "{pattern} {no:?}");
    }
    // Every category and subcategory RFC 9485 names compiles.
    for category in [
        "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl", "No", "P", "Pc",
        "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Z", "Zl", "Zp", "Zs", "S", "Sc", "Sk", "Sm", "So",
        "C", "Cc", "Cf", "Cn", "Co",
    ] {
        assert!(matches(&format!(r"\p{{{category}}}|x"), "x"), "{category}");
        assert!(matches(&format!(r"\P{{{category}}}|x"), "x"), "{category}");
    }
    for category in ["Cs", "Lc", "Lx", "LC", "IsBasicLatin", "", "L}"] {
        assert!(!matches(&format!(r"\p{{{category}}}|x"), "x"), "{category}");
    }
}

#[test]
fn dot_matches_any_character_but_line_feed_and_carriage_return() {
    assert!(matches("a.b", "axb"));
    assert!(matches("a.b", "a\u{2028}b"));
    assert!(matches("a.b", "a\u{10101}b"));
    assert!(!matches("a.b", "a\nb"));
    // The `regex` crate's own `.` matches a carriage return.
    assert!(regex_crate_matches("a.b", "a\rb"));
    assert!(!matches("a.b", "a\rb"));
    assert!(!search(".", "\r\n"));
    // In a class, `.` is the character.
    assert!(matches("a[.]b", "a.b"));
    assert!(!matches("a[.]b", "axb"));
}

#[test]
fn match_is_on_the_whole_string_and_search_on_any_part() {
    assert!(!matches("b", "abc"));
    assert!(search("b", "abc"));
    assert!(matches("abc", "abc"));
    // The whole alternation is anchored, not its first and last branches.
    assert!(!matches("a|bc", "abc"));
    assert!(!matches("ab|c", "abc"));
    assert!(search("a|bc", "abc"));
    assert!(!search("x", "abc"));
}

#[test]
fn caret_and_dollar_are_assertions() {
    assert!(matches("^ab.*", "abc"));
    assert!(matches(".*bc$", "abc"));
    assert!(search("^a", "abc"));
    assert!(!search("^b", "abc"));
    assert!(search("c$", "abc"));
    assert!(!search("b$", "abc"));
    assert!(!matches("a$b", "a$b"));
    // The characters themselves.
    assert!(matches(r"a\^b", "a^b"));
    assert!(matches("a[$^]b", "a$b"));
}

#[test]
fn both_arguments_must_be_strings() {
    let doc = json!([{"text": 1, "pattern": "1"}, {"text": "1", "pattern": 1}, {"text": "1"}]);
    assert!(select(&["$[?match(@.text, @.pattern)]"], &doc).is_empty());
    assert!(select(&["$[?search(@.text, @.pattern)]"], &doc).is_empty());
    // The RFC's types: a logical result is not compared, a nodelist is no value.
    for path in [
        "$[?match(@.a, 'a')==true]",
        "$[?match(@.*, 'a')]",
        "$[?search(@.a)]",
    ] {
        assert!(Selection::parse(&[path]).is_err(), "{path}");
    }
}

#[test]
fn a_pattern_in_the_path_compiles_once_for_a_large_array() {
    let doc = Value::Array((0..10_000).map(|i| json!(format!("a{i}"))).collect());
    let before = compiles();
    assert_eq!(select(&["$[?match(@, 'a1.*')]"], &doc).len(), 1_111);
    assert_eq!(compiles(), before + 1);
    // And again for the next document: the cache outlives one evaluation.
    assert_eq!(select(&["$[?match(@, 'a1.*')]"], &doc).len(), 1_111);
    assert_eq!(compiles(), before + 1);
}

#[test]
fn a_pattern_from_the_document_compiles_once_for_a_large_array() {
    let items: Vec<Value> = (0..10_000)
        .map(|i| json!({"text": format!("a{i}"), "pattern": "a1.*"}))
        .collect();
    let doc = json!({"items": items, "pattern": "a2.*"});
    let before = compiles();
    let selected = select(&["$.items[?match(@.text, @.pattern)]"], &doc);
    assert_eq!(selected.len(), 1_111);
    assert_eq!(compiles(), before + 1);
    let selected = select(&["$.items[?search(@.text, $.pattern)]"], &doc);
    assert_eq!(selected.len(), 1_111);
    assert_eq!(compiles(), before + 2);
}

#[test]
fn patterns_from_the_document_are_budgeted_and_their_cache_is_bounded() {
    let distinct = |from: usize| -> Value {
        (from..from + 100)
            .map(|i| json!({"text": format!("x{i}"), "pattern": format!("x{i}")}))
            .collect()
    };
    let path = ["$[?match(@.text, @.pattern)]"];
    let before = compiles();
    let selected = select(&path, &distinct(0));
    assert_eq!(selected.len(), DOCUMENT_COMPILES_PER_EVALUATION);
    assert_eq!(compiles(), before + DOCUMENT_COMPILES_PER_EVALUATION);
    // Each evaluation has its own budget; the cache keeps the most recent patterns.
    for round in 1..20 {
        let selected = select(&path, &distinct(100 * round));
        assert_eq!(selected.len(), DOCUMENT_COMPILES_PER_EVALUATION);
        assert!(document_patterns_cached(Mode::Match) <= DOCUMENT_CACHE);
    }
    assert_eq!(document_patterns_cached(Mode::Match), DOCUMENT_CACHE);
    // A document whose patterns fit in the budget is evaluated in full however often
    // they recur.
    let recurring: Value = (0..1000)
        .map(|i| {
            let p = format!("y{}", i % DOCUMENT_COMPILES_PER_EVALUATION);
            json!({"text": p, "pattern": p})
        })
        .collect();
    assert_eq!(select(&path, &recurring).len(), 1000);
}

#[test]
fn patterns_in_the_path_are_not_budgeted() {
    let n = DOCUMENT_COMPILES_PER_EVALUATION + 4;
    let filter: Vec<String> = (0..n).map(|i| format!("match(@, 'z{i}')")).collect();
    let path = format!("$[?{}]", filter.join(" || "));
    let doc: Value = (0..n).map(|i| json!(format!("z{i}"))).collect();
    assert_eq!(select(&[&path], &doc).len(), n);
}

#[test]
fn outside_a_selection_document_patterns_are_not_budgeted() {
    let n = DOCUMENT_COMPILES_PER_EVALUATION + 4;
    let doc: Value = (0..n)
        .map(|i| json!({"text": format!("w{i}"), "pattern": format!("w{i}")}))
        .collect();
    let path = serde_json_path::JsonPath::parse("$[?search(@.text, @.pattern)]").unwrap();
    assert_eq!(path.query(&doc).len(), n);
}

#[test]
fn matching_with_patterns_from_the_document_is_budgeted() {
    // Weight 1002: a thousand `a`s, then two positions.
    let pattern = "a{1000}(a|b)*";
    assert_eq!(translate(pattern, Mode::Match).unwrap().weight, 1002);
    let fits = "a".repeat(10_000);
    let too_long = "a".repeat(20_000);
    const { assert!(1002 * 10_000 <= DOCUMENT_WORK_PER_EVALUATION) };
    const { assert!(1002 * 20_000 > DOCUMENT_WORK_PER_EVALUATION) };
    assert!(matches(pattern, &fits));
    assert!(!matches(pattern, &too_long));
    // The budget is for one evaluation: the second string no longer fits.
    let doc = json!([{"text": fits, "pattern": pattern}, {"text": fits, "pattern": pattern}]);
    assert_eq!(select(&["$[?match(@.text, @.pattern)]"], &doc).len(), 1);
    // A pattern in the path, or outside a selection, is not budgeted.
    let doc = json!([too_long]);
    assert_eq!(
        select(&[&format!("$[?match(@, '{pattern}')]")], &doc).len(),
        1
    );
    let doc = json!([{"text": too_long, "pattern": pattern}]);
    let path = serde_json_path::JsonPath::parse("$[?match(@.text, @.pattern)]").unwrap();
    assert_eq!(path.query(&doc).len(), 1);
}

#[test]
fn weights_bound_the_automaton() {
    for (pattern, weight) in [
        ("", 0),
        ("abc", 3),
        ("a|bc", 3),
        ("(ab)*c?", 3),
        ("a{3}", 3),
        ("a{2,5}", 5),
        ("a{2,}", 3),
        ("(a{10}){10}", 100),
        ("[a-z0-9]", 1),
        (r"\p{L}", CATEGORY_WEIGHT),
        (r"[a\P{Lu}]{2}", 2 * CATEGORY_WEIGHT),
        ("^.$", 3),
    ] {
        assert_eq!(
            translate(pattern, Mode::Search).unwrap().weight,
            weight,
            "{pattern}"
        );
    }
}

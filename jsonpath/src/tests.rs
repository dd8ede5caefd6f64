use serde_json::{Value, json};

use super::*;

/// Documents with repeated names at several depths, arrays of varied lengths, names that
/// need escaping and names that look like numbers.
fn documents() -> Vec<Value> {
    const NAMES: [&str; 8] = ["a", "b", "ssn", "email", "x y", "it's", "10", "9"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    fn grow(depth: u32, next: &mut dyn FnMut(u64) -> u64) -> Value {
        match if depth == 0 { 3 + next(2) } else { next(5) } {
            0 => Value::Object(
                (0..next(5))
                    .map(|_| (NAMES[next(8) as usize].to_string(), grow(depth - 1, next)))
                    .collect(),
            ),
            1 | 2 => Value::Array((0..next(5)).map(|_| grow(depth - 1, next)).collect()),
            3 => json!(next(1000)),
            _ => json!(format!("s{}", next(100))),
        }
    }
    let mut docs = vec![
        json!({"a": {"a": {"b": 1}}, "b": [{"a": 2}, {"a": [3, {"a": 4}]}], "ssn": "1"}),
        json!([[0, 1, 2], {"a": [5, 6]}, "x"]),
        json!({"10": 1, "9": 2, "it's": {"x y": 3}}),
        json!("scalar"),
    ];
    for _ in 0..60 {
        docs.push(Value::Object(
            (0..4)
                .map(|i| (NAMES[i].to_string(), grow(4, &mut next)))
                .collect(),
        ));
    }
    docs
}

const SIMPLE: &[&[&str]] = &[
    &["$.a"],
    &["$..a"],
    &["$.*"],
    &["$..*"],
    &["$[0]"],
    &["$..[0]"],
    &["$.a[*].b"],
    &["$..b..a"],
    &["$['a','b']"],
    &["$[\"a\"]"],
    &["$[-1]"],
    &["$..[-1,0]"],
    &["$.a.a.b"],
    &["$..['ssn',1]"],
    &["$..['x y']", "$['10','9']"],
    &["$[*][*]"],
    &["$..a[*]"],
    &["$..*..a"],
    &["$.a..b"],
    &["$[ 'a' , 0 ]"],
    &["$..a", "$.a.b"],
    &["$[0]", "$..[0]", "$..b"],
    &["$..ssn", "$..email", "$.b[*]"],
    &["$"],
];

/// Applies `selection` with an edit that wraps each value in a string showing what it
/// held, so the order of edits is visible in the result, or that removes it.
fn apply(selection: &Selection, doc: &Value, remove: bool) -> (Value, Vec<String>) {
    let mut doc = doc.clone();
    let paths = selection.edit(&mut doc, &mut |v| {
        if remove {
            Outcome::Remove
        } else {
            *v = Value::String(format!("<{v}>"));
            Outcome::Keep
        }
    });
    (doc, paths)
}

#[test]
fn the_single_walk_edits_exactly_what_the_located_query_edits() {
    let docs = documents();
    for paths in SIMPLE {
        let walk = Selection::parse(paths).unwrap();
        assert!(
            walk.is_single_walk(),
            "{paths:?} should take the single walk"
        );
        let located = walk.clone().without_single_walk();
        let mut edited = 0;
        for doc in &docs {
            for remove in [false, true] {
                let got = apply(&walk, doc, remove);
                assert_eq!(
                    got,
                    apply(&located, doc, remove),
                    "paths {paths:?}, remove {remove}, document {doc}"
                );
                edited += got.1.len();
            }
        }
        assert!(
            edited > 0 || paths == &["$"],
            "{paths:?} selected nothing in any document"
        );
    }
}

#[test]
fn filters_slices_and_escaped_names_take_the_located_query() {
    for path in [
        "$[?@.a]",
        "$[1:3]",
        "$..[?@ > 1]",
        r"$['it\'s']",
        "$['a,b']",
        "$['a]b']",
    ] {
        let s = Selection::parse(&[path]).unwrap();
        assert!(!s.is_single_walk(), "{path}");
    }
    // A located path still joins a union with simple ones.
    let s = Selection::parse(&["$.a", "$.b[?@ > 1]"]).unwrap();
    let mut doc = json!({"a": 1, "b": [1, 2, 3]});
    let paths = s.edit(&mut doc, &mut |_| Outcome::Remove);
    assert_eq!(doc, json!({"b": [1]}));
    assert_eq!(paths, ["$['b'][2]", "$['b'][1]", "$['a']"]);
}

#[test]
fn edits_run_deepest_and_last_first_and_once_per_value() {
    let s = Selection::parse(&["$..a", "$.a"]).unwrap();
    let (doc, paths) = apply(
        &s,
        &json!({"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}),
        false,
    );
    assert_eq!(
        doc,
        json!({"a": "<{\"a\":\"<1>\"}>", "b": [{"a": "<2>"}, {"a": "<3>"}]})
    );
    assert_eq!(
        paths,
        ["$['b'][1]['a']", "$['b'][0]['a']", "$['a']['a']", "$['a']"]
    );
}

#[test]
fn removing_many_array_elements_keeps_the_others_in_order() {
    let s = Selection::parse(&["$.a[2,10,-1]"]).unwrap();
    let mut doc = json!({"a": (0..13).collect::<Vec<_>>()});
    let paths = s.edit(&mut doc, &mut |_| Outcome::Remove);
    assert_eq!(doc, json!({"a": [0, 1, 3, 4, 5, 6, 7, 8, 9, 11]}));
    assert_eq!(paths, ["$['a'][12]", "$['a'][10]", "$['a'][2]"]);
}

#[test]
fn the_root_is_never_selected_and_names_are_escaped_or_not_recorded() {
    let s = Selection::parse(&["$", "$..*"]).unwrap();
    let mut doc = json!({"it's\n": 1});
    // A name that is not a field name is reported as `[*]` (keys are data too)...
    assert_eq!(s.edit(&mut doc, &mut |_| Outcome::Remove), ["$[*]"]);
    // ...and push_name still escapes as RFC 9535 says.
    let mut path = String::from("$");
    push_name(&mut path, "it's\n");
    assert_eq!(path, r"$['it\'s\n']");
    assert_eq!(doc, json!({}));
    assert!(Selection::parse(&["$["]).is_err());
}

#[test]
fn audit_paths_keep_field_names_and_drop_keys_that_are_data() {
    for (path, scrubbed) in [
        ("$['user']['ssn']", "$['user']['ssn']"),
        ("$['a_b-c'][3]['line2']", "$['a_b-c'][3]['line2']"),
        ("$['by_ssn']['219-09-9999']", "$['by_ssn'][*]"),
        ("$['ada@example.com']['x']", "$[*]['x']"),
        ("$['acct_123456789']", "$[*]"),
        ("$['4111111111111111']", "$[*]"),
        ("$['it\\'s']", "$[*]"),
        ("$['Full Name']", "$[*]"),
        ("$", "$"),
        ("$['unterminated", "$[*]"),
        ("$[\"219-09-9999\"]", "$[*]"),
        ("$.AdaLovelace", "$[*]"),
        ("$[ 'ada@x' ]", "$[*]"),
        ("$[536228145]", "$[*]"),
        ("$['a'][12]['b']", "$['a'][12]['b']"),
        ("219-09-9999", "[*]"),
    ] {
        assert_eq!(crate::scrub_keys(path), scrubbed, "{path}");
    }
}

#[test]
fn every_located_path_is_normalized_and_other_spellings_are_not() {
    fn each(value: &Value, path: &mut String, seen: &mut usize) {
        assert!(is_normalized(path), "{path}");
        *seen += 1;
        let len = path.len();
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    push_name(path, k);
                    each(v, path, seen);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    push_index(path, i);
                    each(v, path, seen);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut seen = 0;
    for doc in documents() {
        each(&doc, &mut String::from("$"), &mut seen);
    }
    assert!(seen > 100, "{seen}");
    let mut escaped = String::from("$");
    push_name(&mut escaped, "a'\\\n\u{1}\u{1f}é");
    push_index(&mut escaped, 10);
    assert!(is_normalized(&escaped), "{escaped}");
    assert!(is_normalized("$[9007199254740991]"));
    for bad in [
        "",
        "a",
        "$.a",
        "$[\"a\"]",
        "$['a'",
        "$[01]",
        "$[-1]",
        "$[]",
        "$['a']x",
        "$['\\x']",
        "$['\\u000a']",
        "$['\\u0041']",
        "$['\\u001F']",
        "$['\n']",
        "$[*]",
        "$..a",
        "$[1:2]",
        "$[9007199254740992]",
        "$[99999999999999999999]",
    ] {
        assert!(!is_normalized(bad), "{bad:?}");
    }
}

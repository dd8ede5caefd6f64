//! The JSONPath Compliance Test Suite (`tests/cts/`, see its README) through [`Selection`].
//!
//! Every case runs. A selector the suite calls invalid must be refused by
//! [`Selection::parse`]; any other must select exactly the expected nodes, compared by value
//! and by normalized path, in order. [`Selection::edit`] reports in reverse document order,
//! so the test reverses what it reports. Reported paths are audit paths (a name that does not
//! look like a field name is `[*]`), so the expected paths go through [`scrub_keys`] first.
//! The single walk and the located query must report the same.
//!
//! Three documented design choices of `Selection` differ from RFC 9535 (see [`Design`]). The
//! cases that differ only by those are listed, with the choices they differ by, in
//! [`BY_DESIGN`]; the test fails if a listed case passes as it is or differs otherwise, and
//! if any other case does not pass.

use palisade_jsonpath::{Outcome, Selection, scrub_keys};
use serde_json::Value;
use serde_json_path::{JsonPath, PathElement};

/// Why `Selection` reports other nodes than a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Design {
    /// The root is never selected: a rule edits values inside a document.
    RootNotSelected,
    /// A node selected more than once (by two selectors, or by a descendant segment
    /// through two routes) is edited, and reported, once.
    DuplicatesMerged,
    /// Nodes are edited, and reported, in reverse document order (deepest and last
    /// first: what makes in-place edits safe), not in the order of the selectors.
    DocumentOrder,
}

/// The cases that differ from the suite only by design choices, by the choices.
const BY_DESIGN: &[(&[Design], &[&str])] = &[
    (&[Design::RootNotSelected], &["basic, root"]),
    (
        &[Design::DuplicatesMerged],
        &[
            "basic, multiple selectors, duplicate index",
            "basic, multiple selectors, wildcard and index",
            "basic, multiple selectors, wildcard and name",
            "basic, multiple selectors, wildcard and slice",
            "basic, multiple selectors, multiple wildcards",
            "filter, multiple selectors, filter and wildcard",
            "filter, multiple selectors, overlapping",
        ],
    ),
    (
        &[Design::DuplicatesMerged, Design::DocumentOrder],
        &[
            "basic, multiple selectors, index and slice, overlapping",
            "filter, multiple selectors, comparison filter, index and slice",
        ],
    ),
    (
        &[Design::DocumentOrder],
        &[
            // RFC 9535 §2.5.2.2: `..[*]` lists a node's children before its grandchildren.
            "basic, descendant segment, wildcard selector, nested arrays",
            "basic, descendant segment, wildcard selector, nested objects",
            // A negative step lists the last element first.
            "slice selector, negative range with negative step",
            "slice selector, negative range with larger negative step",
            "slice selector, larger negative range with larger negative step",
            "slice selector, negative from, positive to, negative step",
            "slice selector, positive from, negative to, negative step",
            "slice selector, negative step with default start",
            "slice selector, negative step with default end",
            "slice selector, negative step with default start and end",
            "slice selector, larger negative step",
            "slice selector, maximal range with negative step",
            "slice selector, excessively large from value with negative step",
            "slice selector, excessively small to value with negative step",
        ],
    ),
];

/// One step from a value to a child; sorts in document order as `Selection` does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Index(usize),
    Name(String),
}

/// An expected node: where it is in document order, its reported path, its value.
#[derive(Debug, Clone)]
struct Node {
    keys: Vec<Key>,
    path: String,
    value: Value,
}

/// What a case came to.
#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    ByDesign(Vec<Design>),
    Fail(String),
}

#[test]
fn compliance_test_suite() {
    let suite: Value = serde_json::from_str(include_str!("cts/cts.json")).unwrap();
    let cases = suite["tests"].as_array().unwrap();
    let (mut passed, mut by_design) = (0, 0);
    let mut problems = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let listed = BY_DESIGN
            .iter()
            .find(|(_, names)| names.contains(&name))
            .map(|(designs, _)| *designs);
        match (run(case), listed) {
            (Verdict::Pass, None) => passed += 1,
            (Verdict::ByDesign(found), Some(listed)) if found == listed => by_design += 1,
            (Verdict::Fail(why), _) => problems.push(format!("{name}: {why}")),
            (verdict, listed) => {
                problems.push(format!("{name}: {verdict:?}, listed as {listed:?}"));
            }
        }
    }
    for name in BY_DESIGN.iter().flat_map(|(_, names)| names.iter()) {
        if !cases.iter().any(|case| case["name"] == *name) {
            problems.push(format!("{name}: listed, not in the suite"));
        }
    }
    println!(
        "compliance test suite: {passed} pass, {by_design} differ by design, {} total",
        cases.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn run(case: &Value) -> Verdict {
    let selector = case["selector"].as_str().unwrap();
    let parsed = Selection::parse(&[selector]);
    if case["invalid_selector"] == true {
        return match parsed {
            Err(_) => Verdict::Pass,
            Ok(_) => Verdict::Fail("an invalid selector was accepted".into()),
        };
    }
    let selection = match parsed {
        Ok(selection) => selection,
        Err(e) => return Verdict::Fail(format!("refused: {e}")),
    };
    let document = &case["document"];
    let got = selected(&selection, document);
    if got != selected(&selection.clone().without_single_walk(), document) {
        return Verdict::Fail("the single walk and the located query differ".into());
    }

    let alternatives = match (&case["result"], &case["result_paths"]) {
        (Value::Array(values), Value::Array(paths)) => vec![(values, paths)],
        _ => case["results"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["results_paths"].as_array().unwrap())
            .map(|(v, p)| (v.as_array().unwrap(), p.as_array().unwrap()))
            .collect(),
    };
    // The closest alternative: a pass, else the one with the fewest design differences.
    let rank = |verdict: &Verdict| match verdict {
        Verdict::Pass => 0,
        Verdict::ByDesign(designs) => designs.len(),
        Verdict::Fail(_) => usize::MAX,
    };
    alternatives
        .into_iter()
        .map(|(values, paths)| {
            let expected = paths
                .iter()
                .zip(values)
                .map(|(path, value)| node(document, path.as_str().unwrap(), value))
                .collect();
            compare(&got, expected)
        })
        .min_by_key(rank)
        .unwrap()
}

/// The paths and values `selection` edits in `document`, in document order.
fn selected(selection: &Selection, document: &Value) -> Vec<(String, Value)> {
    let mut document = document.clone();
    let mut values = Vec::new();
    let paths = selection.edit(&mut document, &mut |value| {
        values.push(value.clone());
        Outcome::Keep
    });
    paths.into_iter().zip(values).rev().collect()
}

/// The expected node at normalized `path`, located in `document` by `serde_json_path`.
fn node(document: &Value, path: &str, value: &Value) -> Node {
    let query = JsonPath::parse(path).unwrap();
    let located = query.query_located(document).exactly_one().unwrap();
    let keys = located
        .location()
        .iter()
        .map(|e| match e {
            PathElement::Name(n) => Key::Name((*n).to_string()),
            PathElement::Index(i) => Key::Index(*i),
        })
        .collect();
    Node {
        keys,
        path: scrub_keys(path),
        value: value.clone(),
    }
}

/// Compares what `Selection` reported with the expected nodes: as they are, then without
/// the root and repeated nodes, in document order.
fn compare(got: &[(String, Value)], mut expected: Vec<Node>) -> Verdict {
    let same = |expected: &[Node]| {
        got.len() == expected.len()
            && got
                .iter()
                .zip(expected)
                .all(|((path, value), n)| *path == n.path && *value == n.value)
    };
    if same(&expected) {
        return Verdict::Pass;
    }
    let mut designs = Vec::new();
    let before = expected.len();
    expected.retain(|n| !n.keys.is_empty());
    if expected.len() < before {
        designs.push(Design::RootNotSelected);
    }
    let before = expected.len();
    let mut seen = Vec::new();
    expected.retain(|n| {
        let first = !seen.contains(&n.keys);
        seen.push(n.keys.clone());
        first
    });
    if expected.len() < before {
        designs.push(Design::DuplicatesMerged);
    }
    if !expected.is_sorted_by(|a, b| a.keys <= b.keys) {
        expected.sort_by(|a, b| a.keys.cmp(&b.keys));
        designs.push(Design::DocumentOrder);
    }
    if !designs.is_empty() && same(&expected) {
        return Verdict::ByDesign(designs);
    }
    let got: Vec<String> = got.iter().map(|(p, v)| format!("{p} = {v}")).collect();
    let want: Vec<String> = expected
        .iter()
        .map(|n| format!("{} = {}", n.path, n.value))
        .collect();
    Verdict::Fail(format!("selected {got:?}, expected {want:?}"))
}

//! Unit tests of the built-in redaction.
use serde_json::json;

use super::*;

fn redact(rules: &[Rule], body: &Value) -> (Value, Vec<String>) {
    let r = Redactor::new(rules, Some(b"k1")).unwrap();
    let out = r.redact(body.to_string().as_bytes()).unwrap();
    let doc = out
        .body
        .map_or(body.clone(), |b| serde_json::from_slice(&b).unwrap());
    (doc, out.paths)
}

#[test]
fn removing_array_elements_past_index_9_removes_the_selected_ones() {
    let doc = json!({"a": (0..12).collect::<Vec<_>>()});
    let (out, paths) = redact(&[Rule::path("$.a[2,10]", Action::Remove)], &doc);
    assert_eq!(out, json!({"a": [0, 1, 3, 4, 5, 6, 7, 8, 9, 11]}));
    assert_eq!(paths.len(), 2);
}

#[test]
fn item35_arrays_nesting_duplicates_escapes_and_numbers_are_all_redacted() {
    let rules = [
        Rule::path("$..ssn", Action::Mask),
        Rule::regex(r"\b4[0-9]{15}\b", Action::Mask),
    ];
    let (doc, paths) = redact(
        &rules,
        &json!({"a": [{"ssn": "1"}, {"b": {"ssn": 2}}], "card": 4111111111111111u64}),
    );
    assert_eq!(
        doc,
        json!({"a": [{"ssn": "[REDACTED]"}, {"b": {"ssn": "[REDACTED]"}}], "card": "[REDACTED]"})
    );
    assert_eq!(paths.len(), 3);
    // Duplicate keys and `\u`-escaped keys: what the redactor parsed is what is sent.
    let r = Redactor::new(&rules, None).unwrap();
    let raw = br#"{"ssn": "111-11-1111", "ss\u006e": "222-22-2222", "x": {"\u0073sn": "3"}}"#;
    let out = r.redact(raw).unwrap();
    let text = String::from_utf8(out.body.unwrap().to_vec()).unwrap();
    assert!(
        !text.contains("111-11") && !text.contains("222-22") && !text.contains("\"3\""),
        "{text}"
    );
}

#[test]
fn remove_and_hash_actions() {
    let (doc, _) = redact(
        &[
            Rule::path("$.items[*].token", Action::Remove),
            Rule::path("$.items[0]", Action::Remove),
        ],
        &json!({"items": [{"token": "a"}, {"token": "b", "id": 2}]}),
    );
    assert_eq!(doc, json!({"items": [{"id": 2}]}));
    let (doc, _) = redact(
        &[Rule::path("$.email", Action::Hash)],
        &json!({"email": "jane@example.com"}),
    );
    let h = doc["email"].as_str().unwrap();
    assert!(
        h.starts_with("[hash:") && h.len() == 23 && !h.contains("jane"),
        "{h}"
    );
    let (doc, _) = redact(
        &[Rule::regex(r"[0-9]{3}-[0-9]{2}-[0-9]{4}", Action::Remove)],
        &json!({"note": "ssn 123-45-6789 ok"}),
    );
    assert_eq!(doc, json!({"note": "ssn  ok"}));
}

#[test]
fn item36_deep_nesting_fails_closed_and_wildcards_over_large_documents_complete() {
    let r = Redactor::new(&[Rule::path("$..*", Action::Mask)], None).unwrap();
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(r.redact(deep.as_bytes()), Err(RedactionError::NotJson));
    let big = json!({"rows": (0..20_000).map(|i| json!({"id": i, "v": "x"})).collect::<Vec<_>>()});
    let out = r.redact(big.to_string().as_bytes()).unwrap();
    assert!(out.paths.len() > 20_000);
}

#[test]
fn item37_huge_or_slow_regexes_are_refused_at_config_time() {
    let long = "a".repeat(MAX_REGEX_LEN + 1);
    assert!(matches!(
        Redactor::new(&[Rule::regex(&long, Action::Mask)], None),
        Err(ConfigError::Regex { index: 0, .. })
    ));
    assert!(matches!(
        Redactor::new(&[Rule::regex("(a{100}){100}{100}", Action::Mask)], None),
        Err(ConfigError::Regex { .. })
    ));
    assert!(matches!(
        Redactor::new(&[Rule::regex("(unclosed", Action::Mask)], None),
        Err(ConfigError::Regex { .. })
    ));
    assert!(matches!(
        Redactor::new(&[Rule::path("$[", Action::Mask)], None),
        Err(ConfigError::Path { .. })
    ));
    assert!(matches!(
        Redactor::new(&[Rule::path("$.a", Action::Hash)], None),
        Err(ConfigError::NoHashKey { index: 0 })
    ));
}

#[test]
fn item38_invalid_json_or_non_utf8_fails_closed() {
    let paths = Redactor::new(&[Rule::path("$.ssn", Action::Mask)], None).unwrap();
    assert_eq!(
        paths.redact(b"{\"ssn\": \"123-45-6789\""),
        Err(RedactionError::NotJson)
    );
    assert_eq!(
        paths.redact(b"ssn=123-45-6789"),
        Err(RedactionError::NotJson)
    );
    let regex = Redactor::new(
        &[Rule::regex("[0-9]{3}-[0-9]{2}-[0-9]{4}", Action::Mask)],
        None,
    )
    .unwrap();
    assert_eq!(
        regex.redact(&[0xff, 0xfe, b'1']),
        Err(RedactionError::NotUtf8)
    );
    let out = regex.redact(b"ssn=123-45-6789").unwrap();
    assert_eq!(out.body.as_deref(), Some(&b"ssn=[REDACTED]"[..]));
    assert_eq!(out.paths, vec!["$"]);
    assert_eq!(regex.redact(b"  ").unwrap(), Redacted::default());
}

#[test]
fn item39_mandatory_paths_must_be_covered() {
    let r = Redactor::new(
        &[
            Rule::path("$..ssn", Action::Mask),
            Rule::path("$.cards[*].number", Action::Mask),
        ],
        None,
    )
    .unwrap();
    assert_eq!(r.covers("$.user.ssn"), Ok(true));
    assert_eq!(r.covers("$['user']['profile']['ssn']"), Ok(true));
    assert_eq!(r.covers("$.cards[*].number"), Ok(true));
    assert_eq!(r.covers("$.cards[3].number"), Ok(true));
    assert_eq!(r.covers("$.user.email"), Ok(false));
    assert_eq!(r.covers("$.cards[*].cvv"), Ok(false));
    let narrow = Redactor::new(&[Rule::path("$.cards[0].number", Action::Mask)], None).unwrap();
    assert_eq!(
        narrow.covers("$.cards[*].number"),
        Ok(false),
        "index 0 does not cover every card"
    );
    assert_eq!(narrow.covers("$.cards[0].number"), Ok(true));
    assert_eq!(r.covers("$..ssn"), Ok(true));
    let top_only = Redactor::new(&[Rule::path("$.ssn", Action::Mask)], None).unwrap();
    assert_eq!(
        top_only.covers("$..ssn"),
        Ok(false),
        "a top-level rule does not cover nested values"
    );
    assert!(
        narrow.covers("$..*").is_err(),
        "descendant wildcards cannot be checked"
    );
}

#[test]
fn the_hash_key_never_appears_in_debug_output() {
    let r = Redactor::new(&[Rule::path("$.a", Action::Hash)], Some(b"s3cr3t-key")).unwrap();
    assert!(!format!("{r:?}").contains("s3cr3t"));
}

#[test]
fn item63_pii_object_keys_are_redacted_and_never_recorded() {
    let ssn = r"\d{3}-\d{2}-\d{4}";
    let doc = json!({"by_ssn": {"219-09-9999": {"n": 1}, "078-05-1120": "x"}, "ok": "219-09-9999"});
    for action in [Action::Mask, Action::Hash, Action::Remove] {
        let r = Redactor::new(&[Rule::regex(ssn, action)], Some(b"0123456789abcdef")).unwrap();
        let out = r.redact(doc.to_string().as_bytes()).unwrap();
        let body = String::from_utf8(out.body.unwrap().to_vec()).unwrap();
        assert!(
            !body.contains("219-09") && !body.contains("078-05"),
            "{action:?}: {body}"
        );
        assert_eq!(
            out.paths
                .iter()
                .filter(|p| p.starts_with("$['by_ssn'][*]"))
                .count(),
            2
        );
        for p in &out.paths {
            assert!(!p.contains("219-09") && !p.contains("078-05"), "{p}");
        }
        let redone: Value = serde_json::from_str(&body).unwrap();
        let kept = redone["by_ssn"].as_object().unwrap().len();
        assert_eq!(
            kept,
            if action == Action::Remove { 0 } else { 2 },
            "{action:?}: {body}"
        );
    }
}

//! Each shipped policy, built from source, run through `palisade run`.

use palisade_test_artifacts::{
    BLOCK_PATTERNS, INJECT_HEADERS, REDACT_PII, REQUIRE_CLAIMS, RESHAPE_JSON,
};
use serde_json::{Value, json};

use crate::cli::{palisade, stdout_json};

fn run(module: &str, args: &[&str], input: Value) -> Value {
    let mut all = vec!["run", module, "--input", "-"];
    all.extend_from_slice(args);
    let out = palisade(&all, Some(&input));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

/// A realistic customer record with every detector class, plus look-alikes that fail
/// their checksums.
pub(crate) fn customer_document() -> Value {
    json!({
        "customer": {
            "name": "Jane Doe",
            "ssn": "123-45-6789",
            "email": "jane.doe@example.com",
            "phone": "+14155552671",
            "notes": "Card 4111 1111 1111 1111 on file; old ref 4111 1111 1111 1112. Escalate to ops@example.org."
        },
        "payments": [
            {"iban": "GB82 WEST 1234 5698 7654 32", "card": "5500-0055-5555-5559"},
            {"iban": "DE89370400440532013000", "amount": 12.5},
            {"iban": "GB82 WEST 1234 5698 7654 33", "note": "checksum fails: stays"}
        ],
        "india": {"aadhaar": "2341 2341 2346", "aadhaar_compact": "234123412346", "pan": "ABCPE1234F",
                  "not_aadhaar": "2341 2341 2347", "not_pan": "ABCDE1234F"},
        "order_id": 4111111111111111u64,
        "tracking": "1Z999AA10123456784"
    })
}

#[test]
fn redact_pii_removes_every_detector_class_and_keeps_look_alikes() {
    let v = run(
        REDACT_PII,
        &["--phase", "response"],
        json!({"status": 200, "body": customer_document()}),
    );
    let body = &v["response"]["body"];
    let text = body.to_string();
    for secret in [
        "123-45-6789",
        "jane.doe@example.com",
        "+14155552671",
        "4111 1111 1111 1111",
        "ops@example.org",
        "5500-0055-5555-5559",
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "2341 2341 2346",
        "234123412346",
        "ABCPE1234F",
        "4111111111111111",
    ] {
        assert!(!text.contains(secret), "{secret} survived: {text}");
    }
    for kept in [
        "4111 1111 1111 1112",
        "GB82 WEST 1234 5698 7654 33",
        "2341 2341 2347",
        "ABCDE1234F",
        "Jane Doe",
        "1Z999AA10123456784",
    ] {
        assert!(text.contains(kept), "{kept} was wrongly redacted: {text}");
    }
    assert_eq!(body["payments"][1]["amount"], 12.5);
    let paths: Vec<&str> = v["redacted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"$['customer']['ssn']") && paths.contains(&"$['payments'][0]['card']"),
        "{paths:?}"
    );
    assert!(!v["logs"].to_string().contains("6789"));
}

#[test]
fn redact_pii_rules_and_remove_mode_on_the_request() {
    let v = run(
        REDACT_PII,
        &[
            "--config",
            r#"paths=["$.password", "$..token"]"#,
            "--config",
            "mode=remove",
        ],
        json!({"method": "POST", "path": "/login", "body": {"user": "jane", "password": "hunter2", "s": {"token": "t"}, "mail": "a@b.io"}}),
    );
    assert_eq!(v["request"]["body"], json!({"user": "jane", "s": {}}));
}

#[test]
fn reshape_json_adapts_a_legacy_response() {
    let ops = r#"ops=[{"op":"rename","from":"/user_name","to":"/user/name"},{"op":"drop","path":"/internal"},{"op":"default","path":"/version","value":2}]"#;
    let v = run(
        RESHAPE_JSON,
        &["--phase", "response", "--config", ops],
        json!({"status": 200, "body": {"user_name": "jane", "internal": 1}}),
    );
    assert_eq!(
        v["response"]["body"],
        json!({"user": {"name": "jane"}, "version": 2})
    );
}

#[test]
fn inject_headers_on_both_sides() {
    let v = run(
        INJECT_HEADERS,
        &[
            "--config",
            "request.set.x-env=prod",
            "--config",
            "request.remove=x-debug",
        ],
        json!({"headers": {"x-debug": "1", "accept": "*/*"}}),
    );
    assert_eq!(
        v["request"]["headers"],
        json!({"accept": "*/*", "x-env": "prod"})
    );
    let v = run(
        INJECT_HEADERS,
        &[
            "--phase",
            "response",
            "--config",
            "response.add.via=palisade",
        ],
        json!({"status": 200, "headers": {"via": "edge"}}),
    );
    assert_eq!(
        v["response"]["headers"],
        json!({"via": ["edge", "palisade"]})
    );
}

#[test]
fn require_claims_allows_and_denies_by_identity() {
    let identity = |role: &str| json!({"context": {"tenant": "acme", "identity": {"subject": "alice", "scopes": ["read"], "claims": {"role": role}}}});
    let args = [
        "--config",
        "scopes=read",
        "--config",
        r#"claims={"role":"admin"}"#,
    ];
    assert_eq!(
        run(REQUIRE_CLAIMS, &args, identity("admin"))["action"],
        "continue"
    );
    let v = run(REQUIRE_CLAIMS, &args, identity("user"));
    assert_eq!(v["action"], "respond");
    assert_eq!(v["response"]["status"], 403);
    assert_eq!(v["response"]["body"], json!({"error": "forbidden"}));
}

#[test]
fn block_patterns_rejects_probes_with_400() {
    let v = run(
        BLOCK_PATTERNS,
        &[],
        json!({"path": "/search", "query": "q=1'%20OR%20'1'='1"}),
    );
    assert_eq!(v["response"]["status"], 400);
    assert_eq!(v["logs"][0]["message"], "blocked: sqli matched in query");
    let v = run(
        BLOCK_PATTERNS,
        &[],
        json!({"path": "/search", "query": "q=shoes"}),
    );
    assert_eq!(v["action"], "continue");
}

#[test]
fn redact_pii_handles_the_deepest_json_serde_accepts_within_the_guest_stack() {
    use bytes::Bytes;
    use palisade_runtime::{Context, Decision, Response, WasmPolicy};

    // 127 levels of nesting with an SSN at the bottom: parsed, walked and serialized
    // recursively inside the guest's 256 KiB stack.
    let deep = format!(
        "{}\"123-45-6789\"{}",
        "{\"a\":".repeat(127),
        "}".repeat(127)
    );
    let policy = WasmPolicy::from_file(crate::fixtures::engine(), REDACT_PII).unwrap();
    let res = Response {
        status: 200,
        headers: Vec::new(),
        body: Bytes::from(deep),
    };
    let inv = policy.on_response(&Context::default(), &crate::fixtures::get("/"), res);
    let Ok(Decision::Continue(out)) = inv.result else {
        panic!("{:?}", inv.result)
    };
    let text = String::from_utf8(out.body.to_vec()).unwrap();
    assert!(text.contains("[REDACTED:ssn]") && !text.contains("6789"));
    assert_eq!(inv.redacted.len(), 1);
}

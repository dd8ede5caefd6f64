//! `palisade run`: output format and every documented exit code.

use std::process::Output;

use palisade_test_artifacts::{MISBEHAVE, REDACT_PII, REQUIRE_CLAIMS};
use serde_json::{Value, json};

/// `palisade ARGS` with a JSON document on stdin.
pub(crate) fn palisade(args: &[&str], stdin: Option<&Value>) -> Output {
    let input = stdin.map(Value::to_string);
    crate::support::cli::run(None, &[], args, input.as_deref().map(str::as_bytes))
}

pub(crate) fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn one_stderr_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr must be one line: {err:?}");
    err
}

#[test]
fn exit_0_on_continue_with_logs_redacted_paths_and_stats() {
    let input = json!({"status": 200, "headers": {"content-type": "application/json"}, "body": {"ssn": "123-45-6789", "id": 7}});
    let out = palisade(
        &["run", REDACT_PII, "--phase", "response", "--input", "-"],
        Some(&input),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["action"], "continue");
    assert_eq!(
        v["response"]["body"],
        json!({"ssn": "[REDACTED:ssn]", "id": 7})
    );
    assert_eq!(v["redacted"], json!(["$['ssn']"]));
    assert!(v["stats"]["fuel"].as_u64().unwrap() > 0);
    assert!(v["stats"]["memory_peak"].as_u64().unwrap() > 0);
    assert!(v["stats"]["duration_us"].is_u64());
}

#[test]
fn exit_0_on_respond() {
    let out = palisade(&["run", REQUIRE_CLAIMS, "--config", "scopes=admin"], None);
    assert_eq!(out.status.code(), Some(0));
    let v = stdout_json(&out);
    assert_eq!(v["action"], "respond");
    assert_eq!(v["response"]["status"], 403);
}

#[test]
fn exit_2_on_usage_errors_and_malformed_input() {
    for (args, stdin) in [
        (
            vec!["run", MISBEHAVE, "--input", "-"],
            Some(json!("not an object")),
        ),
        (
            vec!["run", MISBEHAVE, "--input", "-"],
            Some(json!({"headers": 7})),
        ),
        (vec!["run", MISBEHAVE, "--config", "novalue"], None),
        (vec!["run", MISBEHAVE, "--fuel", "lots"], None),
        (
            vec!["run", MISBEHAVE, "--input", "/nonexistent/input.json"],
            None,
        ),
        (vec!["run", "/nonexistent/module.wasm"], None),
        (vec!["run", MISBEHAVE, "--phase", "sideways"], None),
    ] {
        let out = palisade(&args, stdin.as_ref());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = palisade(
        &["run", MISBEHAVE, "--input", "-"],
        Some(&json!({"body": 1, "body_text": "x"})),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(one_stderr_line(&out).contains("only one of"));
}

#[test]
fn exit_3_on_a_resource_limit() {
    let out = palisade(
        &[
            "run",
            MISBEHAVE,
            "--input",
            "-",
            "--timeout",
            "100",
            "--fuel",
            "unlimited",
        ],
        Some(&json!({"path": "/loop"})),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(one_stderr_line(&out).contains("deadline of 100ms exceeded"));
    assert_eq!(stdout_json(&out)["error"]["kind"], "deadline");

    let out = palisade(
        &["run", MISBEHAVE, "--input", "-", "--fuel", "100000"],
        Some(&json!({"path": "/loop"})),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(one_stderr_line(&out).contains("fuel exhausted"));

    let out = palisade(
        &["run", MISBEHAVE, "--input", "-", "--memory", "4M"],
        Some(&json!({"path": "/alloc"})),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(one_stderr_line(&out).contains("memory limit"));
}

#[test]
fn exit_4_when_the_guest_fails() {
    let out = palisade(
        &["run", MISBEHAVE, "--input", "-"],
        Some(&json!({"path": "/panic"})),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(one_stderr_line(&out).contains("policy bug: index out of range"));
    let out = palisade(
        &["run", MISBEHAVE, "--input", "-"],
        Some(&json!({"path": "/error"})),
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(stdout_json(&out)["error"]["kind"], "guest_error");
}

#[test]
fn exit_5_when_the_module_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0garbage").unwrap();
    let out = palisade(&["run", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(5));
    assert!(one_stderr_line(&out).contains("invalid module"));
}

#[test]
fn a_core_module_with_a_wit_section_is_componentized_at_load() {
    // What cargo emits for a guest before `cargo guests` componentizes it.
    let core = std::path::Path::new(palisade_test_artifacts::WORKSPACE)
        .join("target/guests/wasm32-unknown-unknown/guest/inject_headers.wasm");
    let bytes = std::fs::read(&core).unwrap();
    assert!(
        wasmparser::Parser::is_core_wasm(&bytes),
        "expected a core module"
    );
    let out = palisade(
        &[
            "run",
            core.to_str().unwrap(),
            "--config",
            "request.set.x-a=1",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["request"]["headers"], json!({"x-a": "1"}));
}

#[test]
fn lua_modules_share_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_string()
    };
    let ok = script(
        "ok.lua",
        "function on_request(req) req.headers['x-lua'] = 'yes' return req end",
    );
    let out = palisade(&["run", &ok], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout_json(&out)["request"]["headers"],
        json!({"x-lua": "yes"})
    );
    let looping = script("loop.lua", "function on_request() while true do end end");
    assert_eq!(
        palisade(&["run", &looping, "--timeout", "100"], None)
            .status
            .code(),
        Some(3)
    );
    let failing = script("fail.lua", "function on_request() error('boom') end");
    let out = palisade(&["run", &failing], None);
    assert_eq!(out.status.code(), Some(4));
    assert!(one_stderr_line(&out).contains("boom"));
    let broken = script("broken.lua", "function on_request( end");
    assert_eq!(palisade(&["run", &broken], None).status.code(), Some(5));
    let bytecode = script("bc.lua", "\x1bLuaS");
    assert_eq!(palisade(&["run", &bytecode], None).status.code(), Some(5));
}

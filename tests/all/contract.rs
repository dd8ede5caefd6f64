//! The contract as the host implements it: phases, the lazy body, host functions,
//! the context a guest sees, and the invocation report.

use bytes::Bytes;
use palisade_runtime::{Context, Decision, Identity, Limits, LogLevel, Request, Response};
use palisade_test_artifacts::{
    HEADERS_ONLY, INJECT_HEADERS, MISBEHAVE, REDACT_PII, REQUIRE_CLAIMS,
};
use serde_json::json;

use crate::fixtures::{ctx, get, guest, request_component};

#[test]
fn a_policy_may_implement_one_phase_only() {
    let bytes = request_component("", "unreachable");
    let policy =
        palisade_runtime::WasmPolicy::new(crate::fixtures::engine(), "req-only", &bytes).unwrap();
    assert!(policy.phases().request && !policy.phases().response);
    let res = Response {
        status: 201,
        headers: vec![("a".into(), "b".into())],
        body: Bytes::from_static(b"x"),
    };
    let inv = policy.on_response(&ctx("t"), &get("/"), res.clone());
    assert_eq!(inv.result.unwrap(), Decision::Continue(res));
    assert_eq!(inv.stats.fuel, 0, "a phase the policy lacks costs nothing");
}

#[test]
fn a_policy_that_never_reads_the_body_never_receives_it() {
    let policy = guest(HEADERS_ONLY);
    let mut fuel = Vec::new();
    for size in [1 << 10, 1 << 20] {
        let mut req = get("/");
        req.body = Bytes::from(vec![b'x'; size]);
        let inv = policy.on_request(&ctx("t"), req);
        let Ok(Decision::Continue(out)) = inv.result else {
            panic!("{:?}", inv.result)
        };
        assert_eq!(out.body.len(), size, "the body passes through untouched");
        assert!(out.headers.contains(&("x-palisade".into(), "seen".into())));
        fuel.push(inv.stats.fuel);
    }
    assert_eq!(fuel[0], fuel[1], "fuel must not depend on an unread body");

    // A policy that does read it pays for the bytes (host calls charge per byte).
    let echo = guest(MISBEHAVE);
    let mut costs = Vec::new();
    for size in [1 << 10, 1 << 20] {
        let mut req = get("/echo-body");
        req.body = Bytes::from(vec![b'x'; size]);
        costs.push(echo.on_request(&ctx("t"), req).stats.fuel);
    }
    assert!(costs[1] > costs[0] + (1 << 20) / 64);
}

#[test]
fn config_context_and_identity_reach_the_guest() {
    let policy = guest(REQUIRE_CLAIMS);
    let mut c = ctx("acme");
    c.config = vec![
        ("scopes".into(), "read".into()),
        ("claims".into(), r#"{"tid":"acme"}"#.into()),
    ];
    c.identity = Some(Identity {
        subject: "alice".into(),
        scopes: vec!["read".into()],
        claims: vec![("tid".into(), json!("acme"))],
    });
    assert!(matches!(
        policy.on_request(&c, get("/")).result,
        Ok(Decision::Continue(_))
    ));
    c.identity.as_mut().unwrap().claims = vec![("tid".into(), json!("other"))];
    let inv = policy.on_request(&c, get("/"));
    let Ok(Decision::Respond(res)) = inv.result else {
        panic!("{:?}", inv.result)
    };
    assert_eq!(res.status, 403);
    assert_eq!(&res.body[..], br#"{"error":"forbidden"}"#);
    assert_eq!(inv.logs[0].level, LogLevel::Info);
    assert_eq!(inv.logs[0].message, "refused: claim `tid` does not match");
}

#[test]
fn redacted_paths_are_reported_and_values_are_not() {
    let policy = guest(REDACT_PII);
    let res = Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(json!({"user": {"ssn": "123-45-6789"}}).to_string()),
    };
    let inv = policy.on_response(&Context::default(), &get("/"), res);
    assert_eq!(inv.redacted, vec!["$['user']['ssn']"]);
    let Ok(Decision::Continue(out)) = inv.result else {
        panic!()
    };
    assert!(!String::from_utf8_lossy(&out.body).contains("6789"));
    for line in &inv.logs {
        assert!(
            !line.message.contains("6789"),
            "a value reached the log: {}",
            line.message
        );
    }
}

#[test]
fn logs_are_capped_per_invocation_and_counted() {
    let policy = guest(MISBEHAVE).with_limits(Limits::default().max_log_bytes(4096));
    let inv = policy.on_request(&ctx("t"), get("/log-flood"));
    assert!(inv.result.is_ok());
    let kept: usize = inv.logs.iter().map(|l| l.message.len() + 32).sum();
    assert!(kept <= 4096, "{kept}");
    assert_eq!(inv.logs.len() as u64 + inv.logs_dropped, 100_000);
}

#[test]
fn request_changes_come_back_typed() {
    let policy = guest(INJECT_HEADERS);
    let mut c = ctx("t");
    c.config = vec![
        ("request.set.x-env".into(), "prod".into()),
        ("request.remove".into(), "x-debug".into()),
    ];
    let req = Request {
        headers: vec![("X-Debug".into(), "1".into())],
        body: Bytes::from_static(b"keep"),
        ..get("/a")
    };
    let Ok(Decision::Continue(out)) = policy.on_request(&c, req).result else {
        panic!()
    };
    assert_eq!(out.headers, vec![("x-env".to_string(), "prod".to_string())]);
    assert_eq!(&out.body[..], b"keep");
    assert_eq!(out.path, "/a");
}

#[test]
fn fuel_is_reported_with_and_without_a_budget() {
    let policy = guest(HEADERS_ONLY);
    let budgeted = policy.on_request(&ctx("t"), get("/")).stats.fuel;
    let unlimited = policy
        .with_limits(Limits::default().unlimited_fuel())
        .on_request(&ctx("t"), get("/"))
        .stats
        .fuel;
    assert!(budgeted > 0);
    assert_eq!(budgeted, unlimited, "the same work costs the same fuel");
}

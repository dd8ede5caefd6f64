//! Tenant code against the runtime (catalogue items 50, 51, 52 and 54, and bulk memory
//! instructions): WASI calls cannot outlive the deadline, spinning is charged, what a
//! guest returns is bounded before the host allocates it, and redaction reports are
//! paths that a failed run never leaves behind.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use palisade_runtime::{
    Decision, Error, Invocation, InvocationPool, Limits, LuaPolicy, MAX_REDACTED_PATHS, Request,
    WasmPolicy,
};
use palisade_test_artifacts::{HEADERS_ONLY, MISBEHAVE, WASI_MISBEHAVE};
use serde_json::{Value, json};

use crate::fixtures::{ctx, engine, get, guest, quick, request_component};
use crate::support::{Reply, send, start};

/// Runs `f` on a thread and fails the test if it has not returned within `secs`: a
/// missing defence shows up as a failure, not a hung test run.
fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the invocation was not stopped: the defence is missing")
}

fn run(policy: &WasmPolicy, path: &str) -> Invocation<Request> {
    let (policy, path) = (policy.clone(), path.to_string());
    bounded(10, move || policy.on_request(&ctx("t"), get(&path)))
}

fn err_of(policy: &WasmPolicy, path: &str) -> Error {
    run(policy, path)
        .result
        .expect_err("the invocation must fail")
}

fn respond_json(policy: &WasmPolicy, path: &str) -> Value {
    match run(policy, path).result {
        Ok(Decision::Respond(r)) => serde_json::from_slice(&r.body).unwrap(),
        other => panic!("{path}: {other:?}"),
    }
}

fn lua(source: &str) -> LuaPolicy {
    LuaPolicy::new(engine(), "test", source.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn lua_err(policy: &LuaPolicy) -> Error {
    policy
        .on_request(&ctx("t"), get("/"))
        .result
        .expect_err("must fail")
}

fn error_name(r: &Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn item50_wasi_waits_on_frozen_time_end_at_once_with_the_deadline_error() {
    let policy = guest(WASI_MISBEHAVE).with_limits(quick());
    // Each would sleep 30 s: `pollable.block`, `poll`, and an instant in the future.
    for path in ["/sleep/30000", "/poll/30000", "/sleep-until/30000"] {
        let err = err_of(&policy, path);
        assert!(
            matches!(err, Error::Deadline(d) if d == Duration::from_millis(250)),
            "{path}: {err:?}"
        );
    }
}

#[test]
fn item50_wasi_waits_that_are_due_and_capped_random_draws_still_work() {
    let policy = guest(WASI_MISBEHAVE);
    assert_eq!(respond_json(&policy, "/sleep/0"), json!({"woke": true}));
    // A 30 s timer is never ready; a zero timer and stdout are, and `poll` says so.
    let polled = respond_json(&policy, "/poll-some/30000");
    let mut ready: Vec<u64> = polled["ready"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    ready.sort_unstable();
    assert_eq!(ready, [1, 2]);
    // Randomness is a fixed sequence, up to 64 KiB per call.
    assert_eq!(
        respond_json(&policy, "/random/65536"),
        json!({"len": 65536, "first": 0x5a})
    );
    assert_eq!(
        respond_json(&policy, "/insecure-random/16"),
        json!({"len": 16, "first": 0xa5})
    );
}

#[test]
fn item50_wasi_random_draws_are_capped_and_a_draw_loop_stops_at_the_deadline() {
    let policy = guest(WASI_MISBEHAVE).with_limits(quick().unlimited_fuel());
    // 64 MiB per call used to be generated before the memory limit refused it.
    let err = err_of(&policy, "/random-loop/67108864");
    assert!(
        matches!(&err, Error::ResourceLimit { what } if what.contains("limit 65536")),
        "{err:?}"
    );
    let err = err_of(&policy, "/random-loop/65536");
    assert!(matches!(err, Error::Deadline(_)), "{err:?}");
}

#[test]
fn item50_a_sleeping_guest_does_not_hold_a_worker_from_other_tenants() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // One worker: while the sleeper holds it, nobody else runs.
        let pool = InvocationPool::new(1);
        let sleeper = guest(WASI_MISBEHAVE);
        let other = guest(HEADERS_ONLY);
        let p = pool.clone();
        let sleeping = tokio::spawn(async move {
            p.run(move || sleeper.on_request(&ctx("sleepy"), get("/sleep/30000")))
                .await
        });
        tokio::task::yield_now().await;
        let served = tokio::time::timeout(
            Duration::from_secs(10),
            pool.run(move || other.on_request(&ctx("other"), get("/"))),
        )
        .await
        .expect("the other tenant waited for a 30 s sleep");
        assert!(matches!(served.result, Ok(Decision::Continue(_))));
        let slept = tokio::time::timeout(Duration::from_secs(10), sleeping)
            .await
            .expect("the sleep ended")
            .unwrap();
        assert!(matches!(slept.result, Err(Error::Deadline(_))));
    });
}

#[test]
fn item51_a_guest_stopped_at_its_deadline_is_charged_for_its_time() {
    // 200 ms at 10^9 fuel per second: what the run is charged at least.
    let deadline = Duration::from_millis(200);
    let floor = Limits::FUEL_PER_SECOND / 5;
    let limits = Limits::default().unlimited_fuel().timeout(deadline);
    let inv = run(&guest(MISBEHAVE).with_limits(limits.clone()), "/loop");
    assert!(matches!(inv.result, Err(Error::Deadline(_))));
    assert!(inv.stats.fuel >= floor, "charged {}", inv.stats.fuel);

    let spin = lua("function on_request() while true do end end").with_limits(limits);
    let inv = spin.on_request(&ctx("t"), get("/"));
    assert!(matches!(inv.result, Err(Error::Deadline(_))));
    assert!(inv.stats.fuel >= floor, "charged {}", inv.stats.fuel);

    // Running out of fuel is counted exactly: the budget, no more.
    let inv = run(
        &guest(MISBEHAVE).with_limits(Limits::default().fuel(1_000_000)),
        "/loop",
    );
    assert!(matches!(inv.result, Err(Error::FuelExhausted { .. })));
    assert_eq!(inv.stats.fuel, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item51_a_tenant_whose_guest_spins_to_the_deadline_is_refused_by_its_cpu_budget() {
    let h = start(
        "",
        r#"
[[tenant]]
name = "spinner"
fuel_per_s = 20000000

[[route]]
name = "spin"
tenant = "spinner"
upstream = "up"
path = "/loop"
[[route.request]]
module = "@MISBEHAVE"
fuel = 0
timeout_ms = 200
"#,
    )
    .await;
    // The first run spins 200 ms: 2 * 10^8 fuel, ten seconds of the tenant's budget.
    let r = send(h.addr(), "GET", "/loop", &[], Bytes::new()).await;
    assert_eq!(r.status, 500);
    assert_eq!(h.block_for(&r)["cause"], "deadline");
    let r = send(h.addr(), "GET", "/loop", &[], Bytes::new()).await;
    assert_eq!(
        (r.status, error_name(&r).as_str()),
        (429, "tenant_cpu_budget")
    );
    assert_eq!(h.block_for(&r)["cause"], "tenant_cpu_budget");
    assert_eq!(h.upstream.hits(), 0);
}

#[test]
fn item52_heads_past_the_header_and_byte_caps_are_refused() {
    let policy = guest(MISBEHAVE);
    let Ok(Decision::Continue(req)) = run(&policy, "/many-headers/1000").result else {
        panic!("1,000 headers are within the cap")
    };
    assert_eq!(req.headers.len(), 1_000);
    for n in [1_001u64, 30_000] {
        let err = err_of(&policy, &format!("/many-headers/{n}"));
        assert!(
            matches!(err, Error::HeadTooLarge { headers, max_headers: 1_000, .. } if headers == n),
            "{n}: {err:?}"
        );
    }
    let err = err_of(&policy, "/big-header/300000");
    assert!(
        matches!(err, Error::HeadTooLarge { headers: 1, bytes, max_bytes: 262_144, .. } if bytes > 300_000),
        "{err:?}"
    );
    let err = err_of(
        &policy.with_limits(Limits::default().max_headers(10)),
        "/many-headers/11",
    );
    assert!(matches!(
        err,
        Error::HeadTooLarge {
            max_headers: 10,
            ..
        }
    ));
}

#[test]
fn item52_bodies_past_the_output_cap_are_output_too_large_at_any_size() {
    let policy = guest(MISBEHAVE).with_limits(
        Limits::default()
            .memory(256 << 20)
            .timeout(Duration::from_secs(5)),
    );
    // Just over the cap, and over the 128 MiB Wasmtime lifts by default.
    for size in [(16 << 20) + 1, 140_000_000u64] {
        let err = err_of(&policy, &format!("/body/{size}"));
        assert!(
            matches!(err, Error::OutputTooLarge { size: s, limit: 16_777_216 } if s > 16 << 20),
            "{size}: {err:?}"
        );
    }
}

#[test]
fn item52_lua_heads_and_bodies_past_the_caps_are_refused() {
    let many = lua(r#"function on_request(req)
        local h = {}
        for i = 1, 30000 do h["x-h" .. i] = "v" end
        req.headers = h
        return req
    end"#);
    let err = lua_err(&many);
    assert!(
        matches!(
            err,
            Error::HeadTooLarge {
                headers: 1_001,
                max_headers: 1_000,
                ..
            }
        ),
        "{err:?}"
    );
    let reply = lua(r#"function on_request()
        local h = {}
        for i = 1, 2000 do h[i] = {"x-h" .. i, "v"} end
        return palisade.respond(200, "ok", h)
    end"#);
    assert!(matches!(lua_err(&reply), Error::HeadTooLarge { .. }));
    let path =
        lua(r#"function on_request(req) req.path = "/" .. string.rep("a", 300000) return req end"#);
    assert!(matches!(lua_err(&path), Error::HeadTooLarge { .. }));
    let body = lua(
        r#"function on_request(req) req.raw_body = string.rep("a", 17 * 1048576) return req end"#,
    );
    assert!(matches!(
        lua_err(&body),
        Error::OutputTooLarge {
            limit: 16_777_216,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item52_a_policy_returning_30000_headers_fails_as_the_policy_and_is_audited() {
    let h = start(
        "",
        r#"
[[route]]
name = "headers"
tenant = "acme"
upstream = "up"
path = "/many-headers"
[[route.request]]
module = "@MISBEHAVE"
"#,
    )
    .await;
    let r = send(h.addr(), "GET", "/many-headers/30000", &[], Bytes::new()).await;
    assert_eq!((r.status, error_name(&r).as_str()), (500, "policy_failed"));
    assert_eq!(h.block_for(&r)["cause"], "head_too_large");
    assert_eq!(h.upstream.hits(), 0);
}

#[test]
fn item54_a_failed_run_reports_no_redactions() {
    let inv = run(&guest(MISBEHAVE), "/redact-then-trap");
    assert!(
        matches!(inv.result, Err(Error::Trap { .. })),
        "{:?}",
        inv.result
    );
    assert_eq!(inv.redacted, Vec::<String>::new());

    let failing = lua(r#"function on_request() palisade.redacted("$.ssn") error("boom") end"#);
    let inv = failing.on_request(&ctx("t"), get("/"));
    assert!(inv.result.is_err());
    assert_eq!(inv.redacted, Vec::<String>::new());
}

#[test]
fn item54_redaction_reports_are_jsonpaths_within_the_caps() {
    let inv = run(&guest(MISBEHAVE), "/redact-values");
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    // "$.ssn" once, then the first 999 of 5,000 item paths; the two values, the 100 KB
    // path and the 4,001 paths past the count cap are dropped and counted.
    assert_eq!(inv.redacted.len(), MAX_REDACTED_PATHS);
    assert_eq!(inv.redacted[0], "$.ssn");
    assert_eq!(inv.redacted[999], "$.items[998].ssn");
    assert_eq!(inv.redacted_dropped, 2 + 1 + 4_001);

    let values = lua(r#"function on_request(req)
        palisade.redacted("123-45-6789")
        palisade.redacted("$['user']['ssn']")
        palisade.redacted("$[?@.ssn == '123-45-6789']")
        return req
    end"#);
    let inv = values.on_request(&ctx("t"), get("/"));
    assert_eq!(inv.redacted, ["$['user']['ssn']"]);
    assert_eq!(inv.redacted_dropped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item54_the_audit_keeps_only_paths_from_runs_that_succeeded() {
    let h = start(
        "",
        r#"
[[route]]
name = "open"
tenant = "acme"
upstream = "up"
host = "open.test"
[[route.request]]
module = "@MISBEHAVE"
fail = "open"

[[route]]
name = "closed"
tenant = "acme"
upstream = "up"
host = "closed.test"
[[route.request]]
module = "@MISBEHAVE"
"#,
    )
    .await;
    // Fail-open: the request goes on unchanged, the trapped run's claim is not audited.
    let r = send(
        h.addr(),
        "GET",
        "/redact-then-trap",
        &[("host", "open.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    let block = h.block_for(&r);
    assert_eq!(block["cause"], "fail_open:trap");
    assert_eq!(block["redacted"], json!([]));

    // Values and junk never reach the ledger; the record stays small.
    let r = send(
        h.addr(),
        "GET",
        "/redact-values",
        &[("host", "closed.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    let block = h.block_for(&r);
    let text = block.to_string();
    assert!(!text.contains("123-45-6789") && !text.contains("ada@example.com"));
    assert_eq!(
        block["redacted"].as_array().unwrap().len(),
        MAX_REDACTED_PATHS
    );
    assert!(text.len() < 64 << 10, "a record of {} bytes", text.len());
}

/// A component whose request phase grows its memory to the default 64 MiB limit and
/// then runs `body`.
fn bulk_policy(body: &str, limits: Limits) -> WasmPolicy {
    let wat = format!("(drop (memory.grow (i32.const 1007))) {body} unreachable");
    WasmPolicy::new(engine(), "bulk", &request_component("", &wat))
        .unwrap()
        .with_limits(limits)
}

const FILL_64_MIB: &str = "(memory.fill (i32.const 0) (i32.const 90) (i32.const 67108864))";

#[test]
fn bulk_memory_instructions_are_checked_and_charged_before_they_run() {
    // Fills of the whole 64 MiB memory in a loop, and 100 in a row without a loop: the
    // deadline is checked before each, so either ends after at most one fill past it.
    let limits = Limits::default()
        .unlimited_fuel()
        .timeout(Duration::from_millis(20));
    for body in [
        format!("(loop {FILL_64_MIB} (br 0))"),
        FILL_64_MIB.repeat(100),
    ] {
        let policy = bulk_policy(&body, limits.clone());
        let started = Instant::now();
        let err = bounded(10, move || {
            policy
                .on_request(&ctx("t"), get("/"))
                .result
                .expect_err("stopped")
        });
        assert!(matches!(err, Error::Deadline(_)), "{err:?}");
        eprintln!(
            "64 MiB fills, 20 ms deadline: stopped after {:?}",
            started.elapsed()
        );
    }
    // A fill costs one unit of fuel per byte, charged before it starts.
    let policy = bulk_policy(FILL_64_MIB, Limits::default().fuel(60 << 20));
    let inv = bounded(10, move || policy.on_request(&ctx("t"), get("/")));
    assert!(
        matches!(inv.result, Err(Error::FuelExhausted { .. })),
        "{:?}",
        inv.result
    );
}

//! Catalogue items 1-11: hostile Wasm guests are contained with a typed error, and the
//! next invocation is unaffected.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use palisade_runtime::{Decision, Error, Limits, WasmPolicy};
use palisade_test_artifacts::{MISBEHAVE, STATE_PROBE};

use crate::fixtures::{ctx, engine, get, guest, quick, request_component};

/// Runs `f` on a thread and fails the test if it has not returned within `secs`:
/// a removed defence shows up as a failure, not a hung test run.
fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the invocation was not stopped: the defence is missing")
}

fn wat_policy(imports: &str, body: &str) -> Result<WasmPolicy, Error> {
    WasmPolicy::new(engine(), "fixture", &request_component(imports, body))
}

fn err_of(policy: &WasmPolicy, path: &str) -> Error {
    let inv = policy.on_request(&ctx("t"), get(path));
    inv.result.expect_err("the invocation must fail")
}

const HOST_BODY_SIZE: &str =
    r#"(import "palisade:policy/host@0.1.0" "body-size" (func $bs (result i64)))"#;

#[test]
fn item01_infinite_loop_hits_the_deadline_and_frees_the_worker() {
    let policy = wat_policy("", "(loop (br 0)) unreachable")
        .unwrap()
        .with_limits(
            Limits::default()
                .unlimited_fuel()
                .timeout(Duration::from_millis(100)),
        );
    let p = policy.clone();
    let err = bounded(10, move || err_of(&p, "/"));
    assert!(
        matches!(err, Error::Deadline(d) if d == Duration::from_millis(100)),
        "{err:?}"
    );
    // The worker is free: the same policy serves again (and fails the same way).
    let err = bounded(10, move || err_of(&policy, "/"));
    assert!(matches!(err, Error::Deadline(_)));
}

#[test]
fn item02_loop_over_a_cheap_host_call_is_stopped() {
    let body = "(loop (drop (call $bs)) (br 0)) unreachable";
    // Host calls cost fuel: with a budget of 10^6 the guest runs out of fuel long before
    // 10,000 calls (without the charge it would make ~200,000 and hit the call bound).
    let policy = wat_policy(HOST_BODY_SIZE, body)
        .unwrap()
        .with_limits(quick().fuel(1_000_000).max_host_calls(10_000));
    let err = bounded(10, move || err_of(&policy, "/"));
    assert!(
        matches!(err, Error::FuelExhausted { limit: 1_000_000 }),
        "{err:?}"
    );

    // Without fuel, the host-call bound stops it ...
    let policy = wat_policy(HOST_BODY_SIZE, body)
        .unwrap()
        .with_limits(quick().unlimited_fuel().max_host_calls(1_000));
    let err = bounded(10, move || err_of(&policy, "/"));
    assert!(
        matches!(err, Error::HostCallLimit { limit: 1_000 }),
        "{err:?}"
    );

    // ... and with neither, the deadline does.
    let policy = wat_policy(HOST_BODY_SIZE, body)
        .unwrap()
        .with_limits(quick().unlimited_fuel().max_host_calls(u64::MAX));
    let err = bounded(10, move || err_of(&policy, "/"));
    assert!(matches!(err, Error::Deadline(_)), "{err:?}");
}

const HOST_SEAL: &str =
    r#"(import "palisade:policy/host@0.1.0" "seal" (func $seal (param i32 i32 i32 i32 i32 i32)))"#;

#[test]
fn item02_a_loop_over_seal_pays_for_its_cryptography_granted_or_not() {
    // `seal` with no grant answers at once, but every call is charged what sealing costs
    // (20,000 fuel beyond the host call's 500): a budget of 10^6 runs out after ~50
    // calls, long before the 1,000-call bound (priced as a cheap call, it would reach it).
    let body = "(loop (call $seal (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) \
                (i32.const 0) (i32.const 1024)) (br 0)) unreachable";
    let policy = wat_policy(HOST_SEAL, body)
        .unwrap()
        .with_limits(quick().fuel(1_000_000).max_host_calls(1_000));
    let err = bounded(10, move || err_of(&policy, "/"));
    assert!(
        matches!(err, Error::FuelExhausted { limit: 1_000_000 }),
        "{err:?}"
    );
}

#[test]
fn item03_unbounded_recursion_is_a_stack_overflow_not_an_abort() {
    let direct = r#"(call $rec (local.get 0))) (func $rec (param i32) (result i32) (i32.add (call $rec (local.get 0)) (i32.const 1))"#;
    let policy = wat_policy("", direct).unwrap().with_limits(quick());
    assert!(matches!(err_of(&policy, "/"), Error::StackOverflow));

    let via_host = r#"(call $rec (local.get 0))) (func $rec (param i32) (result i32) (drop (call $bs)) (i32.add (call $rec (local.get 0)) (i32.const 1))"#;
    let policy = wat_policy(HOST_BODY_SIZE, via_host)
        .unwrap()
        .with_limits(quick());
    assert!(matches!(err_of(&policy, "/"), Error::StackOverflow));

    // A Rust guest recursing without bound.
    let policy = guest(MISBEHAVE).with_limits(quick());
    assert!(matches!(err_of(&policy, "/recurse"), Error::StackOverflow));
}

#[test]
fn item04_huge_memory_is_refused_and_growth_is_bounded() {
    let source = crate::fixtures::core_module("", "unreachable").replace(
        "(memory (export \"memory\") 17)",
        "(memory (export \"memory\") 65536)",
    );
    let bytes = crate::fixtures::component_with(&source, "request-policy", &[], None);
    let err =
        WasmPolicy::new(engine(), "huge", &bytes).expect_err("a 4 GiB memory must be refused");
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == Limits::DEFAULT_MEMORY),
        "{err:?}"
    );

    let limit = 8 << 20;
    let grow = "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable";
    let policy = wat_policy("", grow)
        .unwrap()
        .with_limits(quick().memory(limit));
    let inv = policy.on_request(&ctx("t"), get("/"));
    assert!(
        matches!(inv.result, Err(Error::MemoryLimit { limit: l, .. }) if l == limit),
        "{:?}",
        inv.result
    );
    assert!(inv.stats.memory_peak <= limit);

    // A Rust guest allocating without bound.
    let policy = guest(MISBEHAVE).with_limits(quick().memory(limit));
    let inv = policy.on_request(&ctx("t"), get("/alloc"));
    assert!(
        matches!(inv.result, Err(Error::MemoryLimit { .. })),
        "{:?}",
        inv.result
    );
    assert!(inv.stats.memory_peak <= limit);
}

#[test]
fn item05_huge_tables_are_refused_by_the_limiter() {
    let source = crate::fixtures::core_module("", "unreachable").replace(
        "(memory (export",
        "(table 10000000 funcref) (memory (export",
    );
    let bytes = crate::fixtures::component_with(&source, "request-policy", &[], None);
    let err = WasmPolicy::new(engine(), "table", &bytes).expect_err("a 10^7 table must be refused");
    assert!(matches!(err, Error::ResourceLimit { .. }), "{err:?}");

    let source = crate::fixtures::core_module(
        "",
        "(loop (br_if 0 (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)))) unreachable",
    )
    .replace("(memory (export", "(table $t 1 funcref) (memory (export");
    let bytes = crate::fixtures::component_with(&source, "request-policy", &[], None);
    let policy = WasmPolicy::new(engine(), "grow", &bytes)
        .unwrap()
        .with_limits(quick().table_elements(50_000));
    let err = err_of(&policy, "/");
    assert!(
        matches!(&err, Error::ResourceLimit { what } if what.contains("50000")),
        "{err:?}"
    );
}

#[test]
fn item06_oversized_and_pathological_modules_are_refused_before_compiling() {
    let mut big = b"\0asm\x0d\0\x01\0".to_vec();
    big.resize(50 << 20, 0);
    let err = WasmPolicy::new(engine(), "big", &big).unwrap_err();
    assert!(
        matches!(err, Error::ModuleTooLarge { size, .. } if size == 50 << 20),
        "{err:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wasm");
    std::fs::write(&path, &big).unwrap();
    assert!(matches!(
        WasmPolicy::from_file(engine(), &path),
        Err(Error::ModuleTooLarge { .. })
    ));

    let nested = format!(
        "{}{}unreachable",
        "(block ".repeat(5_000),
        ")".repeat(5_000)
    );
    let err = wat_policy("", &nested).unwrap_err();
    assert!(
        matches!(&err, Error::CompileBound(m) if m.contains("nested")),
        "{err:?}"
    );

    let many = "(func)".repeat(100_000);
    let source = crate::fixtures::core_module("", "unreachable")
        .replace("(memory (export", &format!("{many} (memory (export"));
    let bytes = crate::fixtures::component_with(&source, "request-policy", &[], None);
    let err = WasmPolicy::new(engine(), "many", &bytes).unwrap_err();
    assert!(
        matches!(&err, Error::CompileBound(m) if m.contains("functions")),
        "{err:?}"
    );
}

#[test]
fn item07_truncated_and_garbage_modules_are_invalid_without_panicking() {
    let real = std::fs::read(MISBEHAVE).unwrap();
    for (what, bytes) in [
        ("truncated", real[..real.len() / 2].to_vec()),
        ("wrong magic", [b"\0wsm".as_slice(), &real[4..]].concat()),
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("empty", Vec::new()),
        ("header only", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        let err = WasmPolicy::new(engine(), what, &bytes).unwrap_err();
        assert!(matches!(err, Error::InvalidModule(_)), "{what}: {err:?}");
    }
}

#[test]
fn item08_bad_pointers_invalid_utf8_and_oversized_output_are_typed_errors() {
    // A result pointer past the end of memory.
    let policy = wat_policy("", "(i32.const -16)").unwrap();
    assert!(matches!(err_of(&policy, "/"), Error::InvalidOutput(_)));

    // ok(continue({method: <ptr,len>, ...})) where `method` points at bytes that are not
    // UTF-8 (`ff fe`), or past the end of memory.
    let answer = |method_ptr: i32, method_len: i32| {
        format!(
            "(i32.store8 (i32.const 1024) (i32.const 0)) (i32.store8 (i32.const 1028) (i32.const 0))
             (i32.store (i32.const 1032) (i32.const {method_ptr})) (i32.store (i32.const 1036) (i32.const {method_len}))
             (i32.store8 (i32.const 1064) (i32.const 0))
             (i32.store16 (i32.const 2100) (i32.const 0xfeff))
             (i32.const 1024)"
        )
    };
    let policy = wat_policy("", &answer(2100, 2)).unwrap();
    let err = err_of(&policy, "/");
    assert!(
        matches!(&err, Error::InvalidOutput(m) if m.contains("utf-8") || m.contains("UTF-8")),
        "{err:?}"
    );
    let policy = wat_policy("", &answer(0x7fff_ff00, 1000)).unwrap();
    assert!(matches!(err_of(&policy, "/"), Error::InvalidOutput(_)));
    // The same answer with a valid method is accepted, so the two above fail for the
    // reason claimed.
    let policy = wat_policy("", &answer(2100, 0)).unwrap();
    let inv = policy.on_request(&ctx("t"), get("/x"));
    assert!(
        matches!(inv.result, Ok(Decision::Continue(ref r)) if r.method.is_empty()),
        "{:?}",
        inv.result
    );

    // The 2 MiB body is refused while it is lifted, before the host holds it all: the
    // size reported is then a lower bound.
    let policy = guest(MISBEHAVE).with_limits(quick().max_output(1 << 20));
    assert!(
        matches!(err_of(&policy, "/big-output"), Error::OutputTooLarge { size, limit: 1_048_576 } if size > 1_048_576)
    );
    assert!(
        matches!(err_of(&policy, "/bad-header"), Error::InvalidOutput(m) if m.contains("x-smuggle"))
    );
    assert!(
        matches!(err_of(&policy, "/bad-status"), Error::InvalidOutput(m) if m.contains("1000"))
    );
}

#[test]
fn item09_a_trap_fails_only_its_request() {
    let policy = guest(MISBEHAVE).with_limits(quick());
    match err_of(&policy, "/panic") {
        Error::Trap {
            guest_message: Some(m),
            trap,
        } => {
            assert!(m.contains("policy bug: index out of range"), "{m}");
            assert!(!m.contains('\n'));
            assert!(trap.contains("unreachable"), "{trap}");
        }
        other => panic!("{other:?}"),
    }
    let inv = policy.on_request(&ctx("t"), get("/fine"));
    assert!(matches!(inv.result, Ok(Decision::Continue(_))));
    assert!(
        matches!(err_of(&policy, "/error"), Error::Guest(m) if m == "upstream contract violated")
    );
}

#[test]
fn item10_imports_outside_the_contract_are_rejected_at_load() {
    let evil = "package evil:steal@1.0.0; interface secrets { steal: func() -> string; }";
    let world = "package test:fixtures; world thief { include palisade:policy/request-policy@0.1.0; import evil:steal/secrets@1.0.0; }";
    let core = crate::fixtures::core_module(
        r#"(import "evil:steal/secrets@1.0.0" "steal" (func $steal (param i32)))"#,
        "(call $steal (i32.const 0)) unreachable",
    );
    let bytes = crate::fixtures::component_with(&core, "thief", &[evil, world], None);
    let err = WasmPolicy::new(engine(), "thief", &bytes).unwrap_err();
    assert!(
        matches!(&err, Error::ForbiddenImport(name) if name == "evil:steal/secrets@1.0.0"),
        "{err:?}"
    );

    // A guest built against another version of the contract.
    let newer = std::fs::read_to_string(crate::fixtures::wit_dir().join("policy.wit"))
        .unwrap()
        .replace("@0.1.0", "@0.2.0");
    let core = crate::fixtures::core_module("", "unreachable").replace("@0.1.0#", "@0.2.0#");
    let bytes = crate::fixtures::component_with(&core, "request-policy", &[], Some(newer));
    let err = WasmPolicy::new(engine(), "newer", &bytes).unwrap_err();
    assert!(
        matches!(&err, Error::ContractVersion { found, .. } if found.contains("@0.2.0")),
        "{err:?}"
    );
}

#[test]
fn item11_no_state_survives_an_invocation() {
    let policy = guest(STATE_PROBE);
    for tenant in ["a", "a", "b", "a"] {
        crate::fixtures::assert_fresh_state(policy.on_request(&ctx(tenant), get("/")));
    }
}

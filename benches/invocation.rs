//! Invocation costs, each measured beside its baseline in one run.
//!
//! `cargo bench --features bench --bench invocation` (figures in docs/benchmarks.md).
//!
//! - `lifecycle`: a fresh instance per call (Palisade) vs one reused instance, for a
//!   small JSON transform;
//! - `limits`: fuel + epoch (default) vs epoch only vs neither, on a compute-heavy guest;
//! - `unread_body`: a headers-only policy with a 1 KiB vs a 1 MiB body;
//! - `lua`: the same small transform in Luau, pooled VM vs a new VM per call, beside Wasm;
//! - `throughput/{1KiB,64KiB,1MiB}`: redaction of JSON documents in MB/s: the
//!   `redact-pii` Wasm guest, its Luau port, the gateway's built-in (native) redaction,
//!   and serde_json parse + serialize, the floor any JSON-aware redactor pays.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_gateway::redaction::{Action, Redactor, Rule};
use palisade_runtime::{Config, Context, Decision, Engine, Limits, LuaPolicy, Request, WasmPolicy};

const RESHAPE_OPS: &str = r#"[{"op":"rename","from":"/user_name","to":"/user/name"},{"op":"drop","path":"/legacy"},{"op":"default","path":"/version","value":2}]"#;

fn small_json_request() -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/users".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(
            br#"{"user_name":"jane","legacy":[1,2,3],"email":"jane@example.com"}"#,
        ),
        ..Request::default()
    }
}

fn reshape_ctx() -> Context {
    Context {
        tenant: "bench".into(),
        route: "bench".into(),
        config: vec![("ops".into(), RESHAPE_OPS.into())],
        ..Context::default()
    }
}

fn engine(config: Config) -> Engine {
    Engine::new(&config.pool(64, 4 << 30)).expect("engine")
}

fn assert_continues(policy: &WasmPolicy, ctx: &Context, req: &Request) {
    let inv = policy.on_request(ctx, req.clone());
    assert!(
        matches!(inv.result, Ok(Decision::Continue(_))),
        "{:?}",
        inv.result
    );
}

fn lifecycle(c: &mut Criterion) {
    let engine = engine(Config::new());
    let policy = WasmPolicy::from_file(&engine, palisade_test_artifacts::RESHAPE_JSON).unwrap();
    let (ctx, req) = (reshape_ctx(), small_json_request());
    assert_continues(&policy, &ctx, &req);
    let mut g = c.benchmark_group("lifecycle");
    g.bench_function("palisade_fresh_instance", |b| {
        b.iter(|| black_box(policy.on_request(&ctx, req.clone())))
    });
    let mut reused = policy.reused_instance();
    g.bench_function("reused_instance", |b| {
        b.iter(|| black_box(reused.on_request(&ctx, &req)))
    });
    g.finish();
}

fn limits(c: &mut Criterion) {
    // redact-pii over a 4 KiB document: guest-bound work, so metering shows.
    let doc = serde_json::json!({"rows": (0..40).map(|i| serde_json::json!({
        "id": i, "note": format!("customer {i} wrote from jane{i}@example.com about order 12345-{i}"),
        "ssn": "123-45-6789"
    })).collect::<Vec<_>>()});
    let req = Request {
        method: "POST".into(),
        path: "/".into(),
        body: Bytes::from(doc.to_string()),
        ..Request::default()
    };
    let ctx = Context::default();
    let mut g = c.benchmark_group("limits");
    for (name, config) in [
        ("fuel_and_epoch", Config::new()),
        ("epoch_only", Config::new().without_fuel_metering()),
        (
            "none",
            Config::new().without_fuel_metering().without_deadlines(),
        ),
    ] {
        let engine = engine(config);
        let policy = WasmPolicy::from_file(&engine, palisade_test_artifacts::REDACT_PII).unwrap();
        assert_continues(&policy, &ctx, &req);
        g.bench_function(name, |b| {
            b.iter(|| black_box(policy.on_request(&ctx, req.clone())))
        });
    }
    g.finish();
}

fn unread_body(c: &mut Criterion) {
    let engine = engine(Config::new());
    let policy = WasmPolicy::from_file(&engine, palisade_test_artifacts::HEADERS_ONLY).unwrap();
    let ctx = Context::default();
    let mut g = c.benchmark_group("unread_body");
    for (name, size) in [("1KiB", 1usize << 10), ("1MiB", 1 << 20)] {
        let req = Request {
            method: "POST".into(),
            path: "/".into(),
            body: Bytes::from(vec![b'x'; size]),
            ..Request::default()
        };
        assert_continues(&policy, &ctx, &req);
        g.bench_function(name, |b| {
            b.iter(|| black_box(policy.on_request(&ctx, req.clone())))
        });
    }
    g.finish();
}

fn lua(c: &mut Criterion) {
    let engine = engine(Config::new());
    let (ctx, req) = (reshape_ctx(), small_json_request());
    let script = std::path::Path::new(palisade_test_artifacts::WORKSPACE)
        .join("policies/lua/reshape-json.lua");
    let pooled = LuaPolicy::from_file(&engine, &script).unwrap();
    let fresh = pooled.without_vm_reuse();
    let wasm = WasmPolicy::from_file(&engine, palisade_test_artifacts::RESHAPE_JSON).unwrap();
    let mut g = c.benchmark_group("lua");
    g.bench_function("lua_pooled_vm", |b| {
        b.iter(|| black_box(pooled.on_request(&ctx, req.clone())))
    });
    g.bench_function("lua_new_vm", |b| {
        b.iter(|| black_box(fresh.on_request(&ctx, req.clone())))
    });
    g.bench_function("wasm_fresh_instance", |b| {
        b.iter(|| black_box(wasm.on_request(&ctx, req.clone())))
    });
    g.finish();
}

/// A JSON document of customer records (each with an email and an SSN) of about `size`
/// bytes.
fn records(size: usize) -> Bytes {
    let mut rows = Vec::new();
    let mut len = 12;
    let mut i = 0;
    while len < size {
        let row = serde_json::json!({
            "id": i,
            "name": format!("Customer {i}"),
            "email": format!("customer{i}@example.com"),
            "ssn": "123-45-6789",
            "note": format!("order {i} shipped; call back before friday about the invoice"),
        });
        len += row.to_string().len() + 1;
        rows.push(row);
        i += 1;
    }
    Bytes::from(serde_json::json!({ "rows": rows }).to_string())
}

fn throughput(c: &mut Criterion) {
    // Unlimited fuel and roomy limits: a 1 MiB document is more work than the
    // per-invocation defaults allow (they bound one request, not a benchmark).
    let limits = Limits::default()
        .unlimited_fuel()
        .memory(256 << 20)
        .timeout(Duration::from_secs(30));
    let engine = engine(Config::new().default_limits(limits));
    let wasm = WasmPolicy::from_file(&engine, palisade_test_artifacts::REDACT_PII).unwrap();
    let script = std::path::Path::new(palisade_test_artifacts::WORKSPACE)
        .join("policies/lua/redact-pii.lua");
    let lua = LuaPolicy::from_file(&engine, &script).unwrap();
    let builtin = Redactor::new(
        &[
            Rule::path("$..email", Action::Mask),
            Rule::path("$..ssn", Action::Mask),
        ],
        None,
    )
    .unwrap();
    let ctx = Context::default();
    for (name, size) in [
        ("1KiB", 1usize << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let body = records(size);
        let req = Request {
            method: "POST".into(),
            path: "/".into(),
            body: body.clone(),
            ..Request::default()
        };
        for out in [
            wasm.on_request(&ctx, req.clone()).result,
            lua.on_request(&ctx, req.clone()).result,
        ] {
            match out {
                Ok(Decision::Continue(r)) => {
                    assert!(!r.body.windows(11).any(|w| w == b"123-45-6789"))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(builtin.redact(&body).unwrap().body.is_some());
        let mut g = c.benchmark_group(format!("throughput/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        if size >= 64 << 10 {
            g.sample_size(10);
        }
        g.bench_function("wasm_guest", |b| {
            b.iter(|| black_box(wasm.on_request(&ctx, req.clone())))
        });
        g.bench_function("lua", |b| {
            b.iter(|| black_box(lua.on_request(&ctx, req.clone())))
        });
        g.bench_function("builtin_native", |b| {
            b.iter(|| black_box(builtin.redact(&body).unwrap()))
        });
        g.bench_function("serde_parse_serialize", |b| {
            b.iter(|| {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                black_box(serde_json::to_vec(&v).unwrap())
            })
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lifecycle, limits, unread_body, lua, throughput
}
criterion_main!(benches);

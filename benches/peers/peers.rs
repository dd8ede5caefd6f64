//! Palisade beside its peers, in one run (`cargo bench -p palisade-peer-benches`;
//! figures in docs/benchmarks.md).
//!
//! `peers`: one invocation (fresh instance or VM + call + teardown where the runtime does
//! that) of the same small JSON redaction: the `redact-pii` policy's code everywhere
//! (its Wasm component, its Extism build, its Luau port, and natively).
//! - `palisade_wasm_fresh`: Palisade's default (pooling allocator, fuel, deadlines);
//! - `wasmtime_default_fresh`: the same component and host on wasmtime's default settings
//!   (on-demand allocator, no fuel, no deadlines);
//! - `palisade_wasm_reused`: one instance called again and again (keeps guest state; never
//!   done by Palisade), the lower bound of any Wasm runtime;
//! - `extism_reused`: one Extism plug-in called again and again (Extism's usual use);
//! - `extism_per_call`: a new Extism plug-in per call from a precompiled module;
//! - `palisade_lua`: the Luau port, pooled VM with a fresh environment per call;
//! - `native`: the same Rust code called directly, the ceiling.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use palisade_runtime::{
    Config, Context, Decision, Engine, Invocation, LuaPolicy, Request, WasmPolicy,
};

/// A small JSON body with an email and an SSN (about 200 bytes).
fn body() -> Bytes {
    Bytes::from(
        serde_json::json!({
            "id": 42,
            "name": "Jane Roe",
            "email": "jane.roe@example.com",
            "ssn": "123-45-6789",
            "note": "call back about order 1234",
            "items": [{"sku": "A-1", "qty": 2}]
        })
        .to_string(),
    )
}

fn request() -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/users".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body(),
        ..Request::default()
    }
}

fn redacted(out: &[u8]) -> bool {
    let s = String::from_utf8_lossy(out);
    s.contains("[REDACTED:email]") && s.contains("[REDACTED:ssn]") && !s.contains("123-45-6789")
}

/// Checks an invocation's outcome (Wasm or Lua): the request goes on, redacted.
fn check(invocation: Invocation<Request>) {
    match invocation.result {
        Ok(Decision::Continue(r)) => assert!(redacted(&r.body), "{:?}", r.body),
        other => panic!("{other:?}"),
    }
}

fn peers(c: &mut Criterion) {
    let (ctx, req) = (Context::default(), request());
    let mut g = c.benchmark_group("peers");

    let engine = Engine::new(&Config::new().pool(64, 4 << 30)).unwrap();
    let policy = WasmPolicy::from_file(&engine, palisade_test_artifacts::REDACT_PII).unwrap();
    check(policy.on_request(&ctx, req.clone()));
    g.bench_function("palisade_wasm_fresh", |b| {
        b.iter(|| black_box(policy.on_request(&ctx, req.clone())))
    });
    let mut reused = policy.reused_instance();
    g.bench_function("palisade_wasm_reused", |b| {
        b.iter(|| black_box(reused.on_request(&ctx, &req)))
    });

    let raw = Engine::new(&Config::new().wasmtime_defaults()).unwrap();
    let raw_policy = WasmPolicy::from_file(&raw, palisade_test_artifacts::REDACT_PII).unwrap();
    check(raw_policy.on_request(&ctx, req.clone()));
    g.bench_function("wasmtime_default_fresh", |b| {
        b.iter(|| black_box(raw_policy.on_request(&ctx, req.clone())))
    });

    let wasm = std::fs::read(env!("EXTISM_REDACT_WASM")).unwrap();
    let manifest = extism::Manifest::new([extism::Wasm::data(wasm)]);
    let compiled = extism::PluginBuilder::new(manifest)
        .with_wasi(false)
        .compile()
        .unwrap();
    let mut plugin = extism::Plugin::new_from_compiled(&compiled).unwrap();
    let out: Vec<u8> = plugin.call("redact", &req.body[..]).unwrap();
    assert!(redacted(&out), "{}", String::from_utf8_lossy(&out));
    g.bench_function("extism_reused", |b| {
        b.iter(|| {
            black_box(
                plugin
                    .call::<&[u8], Vec<u8>>("redact", &req.body[..])
                    .unwrap(),
            )
        })
    });
    g.bench_function("extism_per_call", |b| {
        b.iter(|| {
            let mut p = extism::Plugin::new_from_compiled(&compiled).unwrap();
            black_box(p.call::<&[u8], Vec<u8>>("redact", &req.body[..]).unwrap())
        })
    });

    let script = std::path::Path::new(palisade_test_artifacts::WORKSPACE)
        .join("policies/lua/redact-pii.lua");
    let lua = LuaPolicy::from_file(&engine, &script).unwrap();
    check(lua.on_request(&ctx, req.clone()));
    g.bench_function("palisade_lua", |b| {
        b.iter(|| black_box(lua.on_request(&ctx, req.clone())))
    });

    let sdk_ctx = palisade_sdk::Context::default();
    g.bench_function("native", |b| {
        b.iter(|| {
            let settings = redact_pii::Settings::from_context(&sdk_ctx).unwrap();
            black_box(settings.redact_body(&req.body).unwrap())
        })
    });
    let native = redact_pii::Settings::from_context(&sdk_ctx)
        .unwrap()
        .redact_body(&req.body)
        .unwrap()
        .unwrap()
        .0;
    assert!(redacted(&native));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
}

criterion_group! {
    name = benches;
    config = config();
    targets = peers
}
criterion_main!(benches);

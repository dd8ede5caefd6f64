//! Invocation costs, each measured beside its baseline in one run.
//!
//! `cargo bench --features bench --bench invocation` (figures in docs/benchmarks.md).
//!
//! - `lifecycle`: a fresh instance per call (Palisade) vs one reused instance, for a
//!   small JSON transform;
//! - `limits`: fuel + epoch (default) vs epoch only vs neither, on a compute-heavy guest;
//! - `unread_body`: a headers-only policy with a 1 KiB vs a 1 MiB body;
//! - `lua`: the same small transform in Luau (pooled VM vs a new VM per call), in
//!   JavaScript (componentize-js, a fresh instance per call) and in Rust (Wasm);
//! - `throughput/{1KiB,64KiB,1MiB}`: redaction of JSON documents in MB/s: the
//!   `redact-pii` Wasm guest, the same crate called natively (`native`), its Luau port,
//!   the gateway's built-in (native) redaction, and serde_json parse + serialize, the
//!   floor any JSON-aware redactor pays.
//!
//! After criterion's own report, a summary of this run's medians: `lifecycle`'s fresh /
//! reused ratio, and per body size the `throughput` times with the Wasm guest / native
//! crate and Lua / Wasm guest ratios; then `target/criterion/throughput/cost.svg`, time
//! per invocation against body size, one line per runtime. Benches a filter left out are
//! left out of the summary too.

mod charts;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use charts::{Axis, Chart, Series, Stroke};
use criterion::{Criterion, Throughput, criterion_group};
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
    // The same transform in JavaScript, built from source (node, componentize-js).
    let js_out = std::path::Path::new(palisade_test_artifacts::WORKSPACE)
        .join("target/js-policies/bench/reshape-json.wasm");
    palisade_guest_build::js::build_js(
        &std::path::Path::new(palisade_test_artifacts::WORKSPACE)
            .join("policies/js/reshape-json.js"),
        &js_out,
    )
    .unwrap();
    let js = WasmPolicy::from_file(&engine, &js_out).unwrap();
    for (name, inv) in [
        ("wasm", wasm.on_request(&ctx, req.clone())),
        ("js", js.on_request(&ctx, req.clone())),
        ("lua", pooled.on_request(&ctx, req.clone())),
    ] {
        assert!(inv.result.is_ok(), "{name}: {:?}", inv.result);
        eprintln!(
            "reshape-json {name}: peak memory {} KiB, fuel {}",
            inv.stats.memory_peak >> 10,
            inv.stats.fuel
        );
    }
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
    g.bench_function("js_fresh_instance", |b| {
        b.iter(|| black_box(js.on_request(&ctx, req.clone())))
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

/// `throughput`'s body sizes: its groups' names and the documents' sizes in bytes.
const SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)];

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
    let sdk_ctx = palisade_sdk::Context::default();
    for (name, size) in SIZES {
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
        let (native, _) = redact_pii::Settings::from_context(&sdk_ctx)
            .unwrap()
            .redact_body(&body)
            .unwrap()
            .expect("redacted");
        assert!(!native.windows(11).any(|w| w == b"123-45-6789"));
        let mut g = c.benchmark_group(format!("throughput/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        if size >= 64 << 10 {
            g.sample_size(10);
        }
        g.bench_function("wasm_guest", |b| {
            b.iter(|| black_box(wasm.on_request(&ctx, req.clone())))
        });
        // The guest's code without the sandbox: config read per call, as the guest does.
        g.bench_function("native", |b| {
            b.iter(|| {
                let settings = redact_pii::Settings::from_context(&sdk_ctx).unwrap();
                black_box(settings.redact_body(&body).unwrap())
            })
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

/// `criterion_main!`'s body, then the summary of this run.
fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary(started);
}

/// `throughput`'s runtimes in the summary and the chart: (bench name, label).
const RUNTIMES: [(&str, &str); 4] = [
    ("wasm_guest", "Wasm guest"),
    ("lua", "Lua"),
    ("native", "native crate"),
    ("builtin_native", "built-in redaction"),
];

/// The median time per iteration, in ns, criterion estimated for `group`/`bench` in this
/// run (started at `since`): `None` if it did not run (an estimate from before `since` is
/// an earlier run's).
fn median_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    // Criterion's directory names: its group and bench ids with `/` made `_`.
    let path = charts::criterion_dir()
        .join(group.replace('/', "_"))
        .join(bench)
        .join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// Prints this run's ratios (from criterion's estimates) and writes the cost chart.
fn summary(since: SystemTime) {
    let us = |ns: Option<f64>| match ns.map(|ns| ns / 1e3) {
        Some(us) if us < 10.0 => format!("{us:.2} µs"),
        Some(us) if us < 100.0 => format!("{us:.1} µs"),
        Some(us) => format!("{us:.0} µs"),
        None => String::new(),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => String::new(),
    };
    let fresh = median_ns("lifecycle", "palisade_fresh_instance", since);
    let reused = median_ns("lifecycle", "reused_instance", since);
    if fresh.is_some() && reused.is_some() {
        println!(
            "\nlifecycle: fresh / reused = {} ({} / {})",
            ratio(fresh, reused),
            us(fresh),
            us(reused)
        );
    }
    let times: Vec<[Option<f64>; 4]> = SIZES
        .iter()
        .map(|(size, _)| {
            RUNTIMES.map(|(bench, _)| median_ns(&format!("throughput/{size}"), bench, since))
        })
        .collect();
    if times.iter().flatten().all(Option::is_none) {
        return;
    }
    let labels = RUNTIMES.map(|(_, label)| label).join(" | ");
    println!("\n| body | {labels} | Wasm guest / native | Lua / Wasm guest |");
    println!("| --- |{} --- | --- |", " --- |".repeat(RUNTIMES.len()));
    // In `RUNTIMES`' order.
    for ((size, _), [wasm, lua, native, builtin]) in SIZES.iter().zip(&times) {
        println!(
            "| {size} | {} | {} | {} | {} | {} | {} |",
            us(*wasm),
            us(*lua),
            us(*native),
            us(*builtin),
            ratio(*wasm, *native),
            ratio(*lua, *wasm),
        );
    }
    let serde = SIZES.map(|(size, _)| {
        median_ns(
            &format!("throughput/{size}"),
            "serde_parse_serialize",
            since,
        )
    });
    let path = charts::criterion_dir().join("throughput/cost.svg");
    match cost_chart(&times, &serde).write_svg(&path) {
        Ok(()) => println!("\nchart: {}", path.display()),
        Err(e) => eprintln!("{}: {e}", path.display()),
    }
}

/// Time per invocation against body size (both logarithmic): one solid line per runtime
/// of [`RUNTIMES`], and serde_json's parse + serialize dashed, the floor under them all.
/// `times[i][j]` is runtime `j`'s median at `SIZES[i]`, `serde[i]` serde's, in ns.
fn cost_chart(times: &[[Option<f64>; 4]], serde: &[Option<f64>; 3]) -> Chart {
    /// A line through the sizes that have a median (`ns`, one per size, in `SIZES` order).
    fn line(label: &str, colour: usize, stroke: Stroke, ns: &[Option<f64>]) -> Series {
        Series {
            label: Some(label.to_string()),
            colour,
            stroke,
            points: SIZES
                .iter()
                .zip(ns)
                .filter_map(|(&(_, bytes), ns)| Some((bytes as f64, (*ns)? / 1e3)))
                .collect(),
        }
    }
    let mut series: Vec<Series> = RUNTIMES
        .iter()
        .enumerate()
        .map(|(j, (_, label))| {
            let ns: Vec<Option<f64>> = times.iter().map(|t| t[j]).collect();
            line(label, j, Stroke::Solid, &ns)
        })
        .collect();
    series.push(line(
        "serde_json parse + serialize (floor)",
        RUNTIMES.len(),
        Stroke::Dashed,
        serde,
    ));
    Chart {
        caption: "redact-pii: time per invocation against body size".to_string(),
        x: Axis {
            title: "JSON body (bytes)",
            ticks: charts::short_number,
        },
        y: Axis {
            title: "µs per invocation (median)",
            ticks: charts::short_number,
        },
        series,
    }
}

//! Audit ledger: blocks appended per second, the latency an append adds to a request,
//! and verification speed.
//!
//! `cargo bench --bench ledger` (set `PALISADE_BENCH_POSTGRES` to a writer-role URL of
//! a ledger created with `palisade ledger init` to include PostgreSQL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_ledger::{Durability, Ledger, Options, Record, Target};

fn record(i: u64) -> Record {
    Record {
        correlation_id: format!("{i:032x}"),
        decision: "allowed".into(),
        method: "GET".into(),
        path: "/orders/42?page=".into(),
        route: "orders".into(),
        status: 200,
        tenant: "acme".into(),
        time_ms: 1_700_000_000_000 + i,
        latency_us: 812,
        upstream: Some("orders".into()),
        redacted: vec!["$['ssn']".into(), "$['card']".into()],
        ..Record::default()
    }
}

/// Appends `n` blocks from `concurrency` tasks at once; returns the time taken.
fn append_many(
    ledger: &Arc<Ledger>,
    rt: &tokio::runtime::Runtime,
    n: u64,
    concurrency: u64,
) -> Duration {
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..concurrency {
            let ledger = ledger.clone();
            tasks.spawn(async move {
                for i in 0..n / concurrency {
                    ledger.append(record(t * n + i)).await.unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        ledger.flush().await;
    });
    started.elapsed()
}

fn targets(dir: &std::path::Path) -> Vec<(&'static str, Target, Durability)> {
    let mut out = vec![
        (
            "sqlite_sync",
            Target::Sqlite(dir.join("sync.db")),
            Durability::Sync,
        ),
        (
            "sqlite_async",
            Target::Sqlite(dir.join("async.db")),
            Durability::Async,
        ),
    ];
    if let Ok(url) = std::env::var("PALISADE_BENCH_POSTGRES") {
        out.push(("postgres_sync", Target::Postgres(url), Durability::Sync));
    }
    out
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ledger_append");
    group.throughput(Throughput::Elements(1));
    for (name, target, durability) in targets(dir.path()) {
        let ledger = Arc::new(
            Ledger::open(
                target,
                Options {
                    durability,
                    ..Options::default()
                },
            )
            .unwrap(),
        );
        // Throughput: 64 requests in flight share each commit (group commit).
        group.bench_function(format!("{name}/64_concurrent"), |b| {
            b.iter_custom(|iters| {
                append_many(&ledger, &rt, iters.max(64), 64) / iters.max(64) as u32 * iters as u32
            })
        });
        // Latency one request pays when it is alone.
        group.bench_function(format!("{name}/latency_alone"), |b| {
            b.iter_custom(|iters| append_many(&ledger, &rt, iters, 1))
        });
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Sqlite(dir.path().join("verify.db"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let ledger = Arc::new(
        Ledger::open(
            target.clone(),
            Options {
                durability: Durability::Async,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let blocks = 1_000_000;
    append_many(&ledger, &rt, blocks, 16);
    ledger.close();
    let mut group = c.benchmark_group("ledger_verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(blocks + 1));
    group.bench_function("sqlite/1M_blocks", |b| {
        b.iter(|| {
            let report = palisade_ledger::verify::verify(&target, None, None).unwrap();
            assert!(report.is_intact());
        })
    });
    group.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);

//! An invocation running to its deadline does not stall other work on the same runtime,
//! whether it runs on a blocking thread (`run`: Lua, WASI guests) or, as Wasm components
//! do, on the calling task's fiber (`on_request`), with every limit and no state kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_runtime::{Decision, Error, InvocationPool, Limits, Policy, WasmPolicy};
use palisade_test_artifacts::{HEADERS_ONLY, MISBEHAVE, STATE_PROBE};

use crate::fixtures::{assert_fresh_state, ctx, get, guest, quick};

/// The `misbehave` guest with no fuel bound: `/loop` runs until `timeout`.
fn looping(timeout: Duration) -> WasmPolicy {
    guest(MISBEHAVE).with_limits(Limits::default().unlimited_fuel().timeout(timeout))
}

/// One async worker thread: anything that does not yield stalls everything else.
fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_looping_guest_on_the_calling_task_yields_to_other_requests() {
    one_thread().block_on(async {
        let pool = InvocationPool::new(4);
        let slow = Policy::Wasm(looping(Duration::from_millis(1_500)));
        let fast = Policy::Wasm(guest(HEADERS_ONLY));
        let slow_done = Arc::new(AtomicBool::new(false));

        let flag = slow_done.clone();
        let p = pool.clone();
        let slow_task = tokio::spawn(async move {
            let inv = p.on_request(&slow, ctx("noisy"), get("/loop")).await;
            flag.store(true, Ordering::SeqCst);
            inv
        });
        // Let the slow guest start (it then runs until its first epoch tick).
        tokio::task::yield_now().await;
        for _ in 0..20 {
            let inv = pool.on_request(&fast, ctx("quiet"), get("/")).await;
            assert!(matches!(inv.result, Ok(Decision::Continue(_))));
        }
        assert!(
            !slow_done.load(Ordering::SeqCst),
            "fast invocations waited for the slow one: it did not yield"
        );
        let slow_inv = slow_task.await.unwrap();
        assert!(
            matches!(slow_inv.result, Err(Error::Deadline(_))),
            "{:?}",
            slow_inv.result
        );
    });
}

#[test]
fn the_calling_task_path_keeps_every_limit_and_no_state() {
    one_thread().block_on(async {
        let pool = InvocationPool::new(4);
        let hostile = |limits: Limits| Policy::Wasm(guest(MISBEHAVE).with_limits(limits));
        let run = async |policy: &Policy, path: &str| {
            pool.on_request(policy, ctx("t"), get(path)).await.result
        };
        let fuel = run(&hostile(quick().fuel(1_000_000)), "/loop").await;
        assert!(matches!(fuel, Err(Error::FuelExhausted { .. })), "{fuel:?}");
        let memory = run(&hostile(quick().memory(8 << 20)), "/alloc").await;
        assert!(
            matches!(memory, Err(Error::MemoryLimit { .. })),
            "{memory:?}"
        );
        let stack = run(&hostile(quick()), "/recurse").await;
        assert!(matches!(stack, Err(Error::StackOverflow)), "{stack:?}");
        let output = run(&hostile(quick().max_output(1 << 20)), "/big-output").await;
        assert!(
            matches!(output, Err(Error::OutputTooLarge { .. })),
            "{output:?}"
        );
        let deadline = run(
            &hostile(quick().unlimited_fuel().timeout(Duration::from_millis(200))),
            "/loop",
        )
        .await;
        assert!(matches!(deadline, Err(Error::Deadline(_))), "{deadline:?}");

        // The same probe as `hostile::item11`: a count kept in a static, and whatever
        // the last run left in memory, seen by the next run.
        let probe = Policy::Wasm(guest(STATE_PROBE));
        for tenant in ["a", "a", "b", "a"] {
            assert_fresh_state(pool.on_request(&probe, ctx(tenant), get("/")).await);
        }
    });
}

#[test]
fn an_invocation_dropped_midway_frees_its_slot() {
    one_thread().block_on(async {
        let pool = InvocationPool::new(1);
        let slow = Policy::Wasm(looping(Duration::from_secs(30)));
        // The client leaves while the guest loops: the request's future is dropped.
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            pool.on_request(&slow, ctx("t"), get("/loop")),
        )
        .await;
        assert!(dropped.is_err(), "the loop ran to completion");
        assert_eq!(pool.available(), 1, "the slot was not given back");
        let next = pool
            .on_request(&Policy::Wasm(guest(HEADERS_ONLY)), ctx("t"), get("/"))
            .await;
        assert!(matches!(next.result, Ok(Decision::Continue(_))));
    });
}

#[test]
fn a_looping_guest_on_a_blocking_thread_does_not_stall_other_invocations() {
    // If invocations ran on the one async thread, the fast one would wait.
    one_thread().block_on(async {
        let pool = InvocationPool::new(4);
        let slow = looping(Duration::from_millis(1_500));
        let fast = guest(HEADERS_ONLY);
        let slow_done = Arc::new(AtomicBool::new(false));

        let flag = slow_done.clone();
        let p = pool.clone();
        let slow_task = tokio::spawn(async move {
            let inv = p
                .run(move || slow.on_request(&ctx("noisy"), get("/loop")))
                .await;
            flag.store(true, Ordering::SeqCst);
            inv
        });
        tokio::task::yield_now().await;
        for _ in 0..20 {
            let f = fast.clone();
            let inv = pool
                .run(move || f.on_request(&ctx("quiet"), get("/")))
                .await;
            assert!(matches!(inv.result, Ok(Decision::Continue(_))));
        }
        assert!(
            !slow_done.load(Ordering::SeqCst),
            "fast invocations finished while the slow one still ran"
        );
        let slow_inv = slow_task.await.unwrap();
        assert!(matches!(slow_inv.result, Err(Error::Deadline(_))));
    });
}

#[test]
fn the_pool_bounds_concurrency() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = InvocationPool::new(2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "{peak} invocations ran at once");
    });
}

//! An invocation running to its deadline does not stall other work on the same runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_runtime::{Decision, Error, InvocationPool, Limits};
use palisade_test_artifacts::{HEADERS_ONLY, MISBEHAVE};

use crate::fixtures::{ctx, get, guest};

#[test]
fn a_looping_guest_does_not_stall_other_invocations() {
    // One async worker thread: if invocations ran on it, the fast one would wait.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = InvocationPool::new(4);
        let slow = guest(MISBEHAVE).with_limits(
            Limits::default()
                .unlimited_fuel()
                .timeout(Duration::from_millis(1_500)),
        );
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

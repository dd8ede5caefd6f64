//! Running invocations from async code without stalling the executor.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// A bounded pool that runs invocations on tokio's blocking threads.
///
/// Invocations are synchronous: a guest that runs to its deadline occupies a thread
/// for that long. Calling them through this pool keeps them off the async worker
/// threads, so other requests on the same runtime keep being served, and the
/// semaphore bounds how many run at once (the rest wait their turn, in order).
#[derive(Debug, Clone)]
pub struct InvocationPool {
    permits: Arc<Semaphore>,
}

impl Default for InvocationPool {
    /// A pool of [`InvocationPool::DEFAULT_CONCURRENCY`].
    fn default() -> Self {
        InvocationPool::new(Self::DEFAULT_CONCURRENCY)
    }
}

impl InvocationPool {
    /// Invocations at once when nothing else is said (`[runtime] concurrency`, a
    /// `PolicyLayer`): 64.
    pub const DEFAULT_CONCURRENCY: usize = 64;

    /// A pool running at most `concurrency` invocations at once.
    pub fn new(concurrency: usize) -> Self {
        InvocationPool {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Runs `f` on a blocking thread once a slot is free.
    ///
    /// # Panics
    ///
    /// Resumes the panic if `f` panics (invocations themselves never do).
    pub async fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Invocations that could start now without waiting.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

//! Running invocations from async code without stalling the executor.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::message::{Context, Invocation, Request, Response};
use crate::policy::Policy;

/// Runs invocations from async code, at most so many at once (the rest wait their
/// turn, in order), without stalling the executor.
///
/// [`InvocationPool::on_request`] and [`InvocationPool::on_response`] run a Wasm
/// component on the calling task: its guest runs on a fiber that yields to the executor
/// at every epoch tick, so other requests keep being served while it runs to its
/// deadline, without a thread hop per invocation. Lua scripts, components built for WASI
/// (whose host functions may block), and components of an engine without deadlines
/// (`Config::without_deadlines`: no epoch, so no yield) run on tokio's blocking threads
/// instead, as does any closure given to [`InvocationPool::run`].
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

    /// Runs `policy`'s request phase once a slot is free.
    pub async fn on_request(
        &self,
        policy: &Policy,
        ctx: Context,
        req: Request,
    ) -> Invocation<Request> {
        match policy {
            Policy::Wasm(p) if p.yields() => {
                let _permit = self.permits.acquire().await.expect("never closed");
                p.on_request_async(&ctx, req).await
            }
            policy => {
                let policy = policy.clone();
                self.run(move || policy.on_request(&ctx, req)).await
            }
        }
    }

    /// Runs `policy`'s response phase once a slot is free; `req` is the request as it
    /// was sent upstream.
    pub async fn on_response(
        &self,
        policy: &Policy,
        ctx: Context,
        req: Arc<Request>,
        res: Response,
    ) -> Invocation<Response> {
        match policy {
            Policy::Wasm(p) if p.yields() => {
                let _permit = self.permits.acquire().await.expect("never closed");
                p.on_response_async(&ctx, &req, res).await
            }
            policy => {
                let policy = policy.clone();
                self.run(move || policy.on_response(&ctx, &req, res)).await
            }
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

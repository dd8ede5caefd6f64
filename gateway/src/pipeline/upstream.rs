//! The upstream phase: breaker, the upstream's in-flight cap, first-byte and total
//! timeouts, retries within a budget, and hedging.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::forward::Outbound;
use super::routes::Route;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::resilience::{RetryOn, UpstreamSlot, retry_after};

/// The upstream's answer, the slot it holds, and when its body must be done by.
pub(crate) struct Answer {
    pub(crate) response: http::Response<Incoming>,
    pub(crate) slot: UpstreamSlot,
    pub(crate) deadline: Instant,
}

/// Sends `out` to the route's upstream: retries (idempotent methods, within the route's
/// budget) and a hedge (when the route has one) all within the route's total timeout.
pub(crate) async fn send(
    route: &Route,
    metrics: &Metrics,
    out: &Outbound,
) -> Result<Answer, Error> {
    let deadline = Instant::now() + route.total;
    match tokio::time::timeout_at(deadline, attempts(route, metrics, out)).await {
        Ok(r) => r.map(|(response, slot)| Answer {
            response,
            slot,
            deadline,
        }),
        Err(_) => Err(Error::UpstreamDeadline),
    }
}

type Attempt = Result<(http::Response<Incoming>, UpstreamSlot), Error>;

async fn attempts(route: &Route, metrics: &Metrics, out: &Outbound) -> Attempt {
    let idempotent = out.method.is_idempotent();
    route.guard.budget.deposit();
    let retry = route.retry.as_ref().filter(|_| idempotent);
    let mut n = 1;
    loop {
        let result = hedged(route, metrics, out, idempotent).await;
        let Some(retry) = retry else {
            return result;
        };
        let retryable = match &result {
            Ok((res, _)) => retry.on.contains(&RetryOn::Status(res.status().as_u16())),
            Err(Error::UpstreamUnavailable) => retry.on.contains(&RetryOn::Connect),
            Err(Error::UpstreamReset) => retry.on.contains(&RetryOn::Reset),
            Err(Error::UpstreamTimeout) => retry.on.contains(&RetryOn::Timeout),
            Err(_) => false,
        };
        if !retryable || n >= retry.attempts {
            return result;
        }
        if !route.guard.budget.withdraw() {
            metrics.upstream_attempt(&route.upstream.name, "budget_exhausted");
            return result;
        }
        metrics.upstream_attempt(&route.upstream.name, "retry");
        drop(result);
        tokio::time::sleep(backoff(retry.backoff, n)).await;
        n += 1;
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(1 s, base * 2^(n-1))]`.
fn backoff(base: Duration, n: u32) -> Duration {
    let cap = base
        .saturating_mul(1 << (n - 1).min(16))
        .min(Duration::from_secs(1));
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).expect("the OS random source is available");
    cap.mul_f64(u64::from_le_bytes(r) as f64 / u64::MAX as f64)
}

/// One attempt, plus a second one if the first has no answer by the hedge delay; the
/// first answer wins and the other attempt is dropped (its connection closed).
async fn hedged(route: &Route, metrics: &Metrics, out: &Outbound, idempotent: bool) -> Attempt {
    let first = once(route, out.build());
    let Some(hedge) = route.hedge.as_ref().filter(|_| idempotent) else {
        return first.await;
    };
    tokio::pin!(first);
    let delay = route.upstream.guard.latency.hedge_delay(hedge);
    tokio::select! {
        r = &mut first => return r,
        () = tokio::time::sleep(delay) => {}
    }
    if !route.guard.budget.withdraw() {
        metrics.upstream_attempt(&route.upstream.name, "budget_exhausted");
        return first.await;
    }
    metrics.upstream_attempt(&route.upstream.name, "hedge");
    let second = once(route, out.build());
    tokio::pin!(second);
    tokio::select! {
        r = &mut first => match r {
            Ok(answer) => Ok(answer),
            Err(_) => second.await,
        },
        r = &mut second => match r {
            Ok(answer) => {
                metrics.upstream_attempt(&route.upstream.name, "hedge_won");
                Ok(answer)
            }
            Err(_) => first.await,
        },
    }
}

/// One attempt through the breaker and the upstream's in-flight cap, up to the response
/// head or the first-byte timeout.
async fn once(route: &Route, req: http::Request<Full<Bytes>>) -> Attempt {
    let guard = &route.upstream.guard;
    let ticket = guard.breaker.admit().map_err(|wait| Error::CircuitOpen {
        retry_after: retry_after(wait),
    })?;
    let slot = guard.slot().await?;
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(route.first_byte, route.client.request(req)).await {
        Err(_) => Err(Error::UpstreamTimeout),
        Ok(Err(e)) if e.is_connect() => Err(Error::UpstreamUnavailable),
        Ok(Err(_)) => Err(Error::UpstreamReset),
        Ok(Ok(res)) => Ok(res),
    };
    let ok = matches!(&result, Ok(res) if !matches!(res.status().as_u16(), 502..=504));
    ticket.finish(ok);
    if result.is_ok() {
        guard.latency.record(started.elapsed());
    }
    result.map(|res| (res, slot))
}

//! Upstream resilience and overload protection (see `docs/resilience.md`).
//!
//! | mechanism | scope | refusal |
//! | --- | --- | --- |
//! | load shedding (`Shedder`) | gateway | 503 `gateway_overloaded` |
//! | concurrency cap | tenant | 429 `tenant_concurrency` |
//! | rate limit (token bucket) | tenant, route | 429 `tenant_rate_limited` / `route_rate_limited` |
//! | CPU (fuel) budget | tenant | 429 `tenant_cpu_budget` |
//! | in-flight cap (pool isolation) | upstream | 503 `upstream_saturated` |
//! | circuit breaker | upstream | 503 `upstream_circuit_open` |
//! | retries with a budget, hedging | route | (the better attempt's answer) |
//!
//! Every refusal carries `Retry-After` and gets its audit block like any request.
//! State (buckets, breakers, budgets) lives in `Kept` and survives reloads as long as
//! the settings it was made from do not change.

mod breaker;
mod budget;
mod config;
pub mod fleet;
mod shed;
mod tenant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use self::breaker::{Breaker, BreakerState};
pub(crate) use self::budget::{LatencyWindow, RetryBudget};
pub use self::config::{Breaker as BreakerConfig, Hedge, Overload, RateLimit, Retry};
pub(crate) use self::shed::{Admission, Shedder};
pub(crate) use self::tenant::{Rate, TenantGuard, TenantSlot, retry_after};
use crate::config as file;
use crate::error::Error;
use crate::metrics::Metrics;

/// What a route's `retry.on` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryOn {
    /// The connection could not be made (nothing was sent).
    Connect,
    /// The connection broke before a response head.
    Reset,
    /// No response head within the first-byte timeout.
    Timeout,
    /// The upstream answered with this 5xx status.
    Status(u16),
}

impl RetryOn {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "connect" => RetryOn::Connect,
            "reset" => RetryOn::Reset,
            "timeout" => RetryOn::Timeout,
            code => match code.parse::<u16>() {
                Ok(c) if (500..600).contains(&c) => RetryOn::Status(c),
                _ => return None,
            },
        })
    }
}

/// An upstream's shared limits: its in-flight cap, breaker and latency window.
#[derive(Debug)]
pub(crate) struct UpstreamGuard {
    pub(crate) name: String,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) latency: LatencyWindow,
    metrics: Arc<Metrics>,
}

/// A slot of an upstream's in-flight cap, held until its response body is done.
#[derive(Debug)]
pub(crate) struct UpstreamSlot {
    _permit: OwnedSemaphorePermit,
    guard: Arc<UpstreamGuard>,
}

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        self.guard.metrics.upstream_in_flight(&self.guard.name, -1);
    }
}

impl UpstreamGuard {
    fn new(u: &file::Upstream, metrics: Arc<Metrics>) -> Self {
        UpstreamGuard {
            name: u.name.clone(),
            permits: Arc::new(Semaphore::new(u.max_in_flight as usize)),
            queue_timeout: u.queue_timeout,
            breaker: Arc::new(Breaker::new(&u.name, u.breaker.clone(), metrics.clone())),
            latency: LatencyWindow::default(),
            metrics,
        }
    }

    /// A slot of the in-flight cap, waiting at most `queue_timeout_ms` for one.
    pub(crate) async fn slot(self: &Arc<Self>) -> Result<UpstreamSlot, Error> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) if self.queue_timeout.is_zero() => return Err(Error::UpstreamSaturated),
            Err(_) => {
                tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                    .await
                    .map_err(|_| Error::UpstreamSaturated)?
                    .map_err(|_| Error::UpstreamSaturated)?
            }
        };
        self.metrics.upstream_in_flight(&self.name, 1);
        Ok(UpstreamSlot {
            _permit: permit,
            guard: self.clone(),
        })
    }
}

/// A route's own rate limit and retry budget.
#[derive(Debug)]
pub(crate) struct RouteGuard {
    pub(crate) rate: Option<Rate>,
    pub(crate) budget: RetryBudget,
}

type Map<K, T> = HashMap<String, (K, Arc<T>)>;
/// The upstream settings its guard is made from.
type UpstreamKey = (u32, Duration, BreakerConfig);
type TenantKey = (Option<RateLimit>, Option<u32>, Option<u64>);
type RouteKey = (Option<RateLimit>, Option<Retry>);

/// Resilience state by name, kept across route rebuilds while its settings stay the
/// same (so a reload or a registry activation does not refill a tenant's bucket or close
/// an open breaker).
#[derive(Debug)]
pub(crate) struct Kept {
    metrics: Arc<Metrics>,
    /// Where rate limits and fuel budgets are counted fleet-wide (`[fleet]`).
    fleet: Option<Arc<fleet::Fleet>>,
    upstreams: Mutex<Map<UpstreamKey, UpstreamGuard>>,
    tenants: Mutex<Map<TenantKey, TenantGuard>>,
    routes: Mutex<Map<RouteKey, RouteGuard>>,
}

/// The state a route build takes from [`Kept`]; becomes the kept state on `commit`.
#[derive(Debug)]
pub(crate) struct Generation<'a> {
    kept: &'a Kept,
    upstreams: Map<UpstreamKey, UpstreamGuard>,
    tenants: Map<TenantKey, TenantGuard>,
    routes: Map<RouteKey, RouteGuard>,
}

fn take<K: PartialEq + Clone, T>(
    old: &Mutex<Map<K, T>>,
    new: &mut Map<K, T>,
    name: &str,
    key: K,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let old = old.lock().expect("kept lock");
    let value = match old.get(name) {
        Some((k, v)) if *k == key => v.clone(),
        _ => Arc::new(make()),
    };
    new.insert(name.to_string(), (key, value.clone()));
    value
}

impl Kept {
    /// Empty state reporting to `metrics`, sharing limits in `fleet`.
    pub(crate) fn new(metrics: Arc<Metrics>, fleet: Option<Arc<fleet::Fleet>>) -> Self {
        Kept {
            metrics,
            fleet,
            upstreams: Mutex::default(),
            tenants: Mutex::default(),
            routes: Mutex::default(),
        }
    }

    pub(crate) fn begin(&self) -> Generation<'_> {
        Generation {
            kept: self,
            upstreams: HashMap::new(),
            tenants: HashMap::new(),
            routes: HashMap::new(),
        }
    }
}

impl Generation<'_> {
    pub(crate) fn upstream(&mut self, u: &file::Upstream) -> Arc<UpstreamGuard> {
        let metrics = self.kept.metrics.clone();
        let key = (u.max_in_flight, u.queue_timeout, u.breaker.clone());
        take(
            &self.kept.upstreams,
            &mut self.upstreams,
            &u.name,
            key,
            || UpstreamGuard::new(u, metrics),
        )
    }

    pub(crate) fn tenant(&mut self, t: &file::Tenant) -> Arc<TenantGuard> {
        let key = (t.rate_limit, t.max_in_flight, t.fuel_per_s);
        let fleet = self.kept.fleet.as_ref();
        take(&self.kept.tenants, &mut self.tenants, &t.name, key, || {
            TenantGuard::new(t, fleet)
        })
    }

    pub(crate) fn route(&mut self, r: &file::Route) -> Arc<RouteGuard> {
        let key = (r.rate_limit, r.retry.clone());
        let fleet = self
            .kept
            .fleet
            .as_ref()
            .map(|f| (f, f.key('r', &r.name, "rate")));
        take(&self.kept.routes, &mut self.routes, &r.name, key, || {
            RouteGuard {
                rate: r.rate_limit.as_ref().and_then(|l| Rate::new(l, fleet)),
                budget: RetryBudget::new(r.retry.as_ref()),
            }
        })
    }

    /// Makes this generation's state the kept one (state of removed names is dropped).
    pub(crate) fn commit(self) {
        *self.kept.upstreams.lock().expect("kept lock") = self.upstreams;
        *self.kept.tenants.lock().expect("kept lock") = self.tenants;
        *self.kept.routes.lock().expect("kept lock") = self.routes;
    }
}

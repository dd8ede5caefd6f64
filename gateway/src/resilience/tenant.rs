//! Per-tenant and per-route admission: token-bucket rate limits, concurrency caps and
//! CPU (fuel) budgets. With `[fleet]`, rate limits and fuel budgets are the fleet's
//! (counted in Redis, [`super::fleet`]) and the per-process ones here are what each
//! gateway falls back to, with `1/size` of the limit, while Redis is unreachable.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::fleet::{Fleet, SharedFuel, SharedRate};
use crate::config;
use crate::error::Error;

/// A token bucket (GCRA): this process's (the governor crate), or the fleet's with this
/// process's share as the fallback.
#[derive(Debug)]
pub(crate) struct Rate {
    limiter: DefaultDirectRateLimiter,
    shared: Option<SharedRate>,
}

impl Rate {
    /// `None` for a limit that `config::check` refuses. With a fleet, the bucket is the
    /// fleet's, under `key`.
    pub(crate) fn new(
        cfg: &super::RateLimit,
        fleet: Option<(&Arc<Fleet>, String)>,
    ) -> Option<Self> {
        let per_s = cfg.per_s;
        let burst = cfg.burst.unwrap_or(cfg.per_s);
        let size = fleet.as_ref().map_or(1, |(f, _)| f.size);
        // This process's share: at least one request per second and at once.
        let local = |n: u32| NonZeroU32::new(n.div_ceil(size));
        let quota = Quota::per_second(local(per_s)?).allow_burst(local(burst)?);
        Some(Rate {
            limiter: RateLimiter::direct(quota),
            shared: fleet.map(|(f, key)| SharedRate::new(f.clone(), key, per_s, burst)),
        })
    }

    /// Takes a token, or says how long until one is there. `limit` names the refusal
    /// (`tenant_rate_limited`), for counting decisions made without the fleet.
    pub(crate) async fn check(&self, limit: &str) -> Result<(), Duration> {
        if let Some(shared) = &self.shared {
            match shared.take().await {
                Some(decided) => return decided,
                None => shared.local(limit),
            }
        }
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Fuel a tenant's policies may burn: `per_s` refilled continuously, one second's worth
/// at most banked. Charged after each invocation, so a balance can go negative; while
/// it is, the tenant's requests that would run policies are refused.
#[derive(Debug)]
pub(crate) struct FuelBudget {
    per_s: u64,
    /// (balance, when it was last refilled)
    state: Mutex<(f64, Instant)>,
    /// The fleet's budget, when there is one (then `per_s` is this process's share).
    shared: Option<Arc<SharedFuel>>,
}

impl FuelBudget {
    fn new(per_s: u64, fleet: Option<(&Arc<Fleet>, String)>) -> Self {
        let size = fleet.as_ref().map_or(1, |(f, _)| u64::from(f.size));
        let local = per_s.div_ceil(size);
        FuelBudget {
            per_s: local,
            state: Mutex::new((local as f64, Instant::now())),
            shared: fleet.map(|(f, key)| SharedFuel::new(f.clone(), key, per_s)),
        }
    }

    /// The fleet's verdict, or this process's when there is no fleet or Redis could not
    /// say.
    async fn admit(&self) -> Result<(), Duration> {
        if let Some(shared) = &self.shared {
            match shared.check().await {
                Some(decided) => return decided,
                None => shared.local(),
            }
        }
        self.check()
    }

    fn refill(&self, state: &mut (f64, Instant)) {
        let now = Instant::now();
        let rate = self.per_s as f64;
        state.0 = (state.0 + rate * now.duration_since(state.1).as_secs_f64()).min(rate);
        state.1 = now;
    }

    /// Ok while the balance is positive, else the time until it is.
    pub(crate) fn check(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("fuel budget lock");
        self.refill(&mut s);
        if s.0 > 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (-s.0 / self.per_s as f64).max(0.001),
            ))
        }
    }

    /// Charges fuel burned by one invocation: to the fleet while Redis decides, else to
    /// this process's budget (which is then full when Redis goes away, not in a debt
    /// run up while the fleet decided).
    pub(crate) fn charge(&self, fuel: u64) {
        if let Some(shared) = &self.shared {
            shared.charge(fuel);
            if shared.shared_now() {
                return;
            }
        }
        let mut s = self.state.lock().expect("fuel budget lock");
        self.refill(&mut s);
        s.0 -= fuel as f64;
    }
}

/// What one tenant may use, shared by all its routes and kept across reloads.
#[derive(Debug)]
pub(crate) struct TenantGuard {
    rate: Option<Rate>,
    in_flight: Option<Arc<Semaphore>>,
    pub(crate) fuel: Option<FuelBudget>,
}

/// A tenant's concurrency slot, held while the request is in the pipeline.
#[derive(Debug)]
pub(crate) struct TenantSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl TenantGuard {
    /// The tenant's guard; its rate limit and fuel budget are `fleet`'s when given
    /// (concurrency caps stay per process).
    pub(crate) fn new(t: &config::Tenant, fleet: Option<&Arc<Fleet>>) -> Self {
        let shared = |what| fleet.map(|f| (f, f.key('t', &t.name, what)));
        TenantGuard {
            rate: t
                .rate_limit
                .as_ref()
                .and_then(|r| Rate::new(r, shared("rate"))),
            in_flight: t
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            fuel: t.fuel_per_s.map(|f| FuelBudget::new(f, shared("fuel"))),
        }
    }

    /// Admits one request of this tenant: its concurrency cap, then its rate, then (for
    /// routes with policies) its CPU budget.
    pub(crate) async fn admit(&self, runs_policies: bool) -> Result<TenantSlot, Error> {
        let slot = match &self.in_flight {
            None => None,
            Some(s) => Some(
                s.clone()
                    .try_acquire_owned()
                    .map_err(|_| Error::TenantBusy)?,
            ),
        };
        if let Some(rate) = &self.rate {
            rate.check("tenant_rate_limited")
                .await
                .map_err(|wait| Error::RateLimited {
                    scope: "tenant",
                    retry_after: retry_after(wait),
                })?;
        }
        if runs_policies && let Some(fuel) = &self.fuel {
            fuel.admit().await.map_err(|wait| Error::CpuBudget {
                retry_after: retry_after(wait),
            })?;
        }
        Ok(TenantSlot(slot))
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub(crate) fn retry_after(wait: Duration) -> u32 {
    u32::try_from(wait.as_millis().div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_budget_goes_into_debt_and_recovers() {
        let b = FuelBudget::new(1_000, None);
        assert!(b.check().is_ok());
        b.charge(3_000);
        let wait = b.check().unwrap_err();
        assert!(wait > Duration::from_millis(1_500) && wait <= Duration::from_secs(2));
        assert_eq!(retry_after(wait), 2);
    }

    #[tokio::test]
    async fn rate_refuses_past_the_burst() {
        let r = Rate::new(
            &crate::resilience::RateLimit {
                per_s: 1,
                burst: Some(3),
            },
            None,
        )
        .unwrap();
        for _ in 0..3 {
            r.check("test").await.unwrap();
        }
        let wait = r.check("test").await.unwrap_err();
        assert!(wait <= Duration::from_secs(1));
    }
}

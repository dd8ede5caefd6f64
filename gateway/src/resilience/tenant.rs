//! Per-tenant and per-route admission: token-bucket rate limits, concurrency caps and
//! CPU (fuel) budgets.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config;
use crate::error::Error;

/// A token bucket (GCRA, the governor crate).
#[derive(Debug)]
pub(crate) struct Rate {
    limiter: DefaultDirectRateLimiter,
}

impl Rate {
    /// `None` for a limit that `config::check` refuses.
    pub(crate) fn new(cfg: &super::RateLimit) -> Option<Self> {
        let per_s = NonZeroU32::new(cfg.per_s)?;
        let burst = NonZeroU32::new(cfg.burst.unwrap_or(cfg.per_s))?;
        Some(Rate {
            limiter: RateLimiter::direct(Quota::per_second(per_s).allow_burst(burst)),
        })
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn check(&self) -> Result<(), Duration> {
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
}

impl FuelBudget {
    fn new(per_s: u64) -> Self {
        FuelBudget {
            per_s,
            state: Mutex::new((per_s as f64, Instant::now())),
        }
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

    /// Charges fuel burned by one invocation.
    pub(crate) fn charge(&self, fuel: u64) {
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
    pub(crate) fn new(t: &config::Tenant) -> Self {
        TenantGuard {
            rate: t.rate_limit.as_ref().and_then(Rate::new),
            in_flight: t
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            fuel: t.fuel_per_s.map(FuelBudget::new),
        }
    }

    /// Admits one request of this tenant: its concurrency cap, then its rate, then (for
    /// routes with policies) its CPU budget.
    pub(crate) fn admit(&self, runs_policies: bool) -> Result<TenantSlot, Error> {
        let slot = match &self.in_flight {
            None => None,
            Some(s) => Some(
                s.clone()
                    .try_acquire_owned()
                    .map_err(|_| Error::TenantBusy)?,
            ),
        };
        if let Some(rate) = &self.rate {
            rate.check().map_err(|wait| Error::RateLimited {
                scope: "tenant",
                retry_after: retry_after(wait),
            })?;
        }
        if runs_policies && let Some(fuel) = &self.fuel {
            fuel.check().map_err(|wait| Error::CpuBudget {
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
        let b = FuelBudget::new(1_000);
        assert!(b.check().is_ok());
        b.charge(3_000);
        let wait = b.check().unwrap_err();
        assert!(wait > Duration::from_millis(1_500) && wait <= Duration::from_secs(2));
        assert_eq!(retry_after(wait), 2);
    }

    #[test]
    fn rate_refuses_past_the_burst() {
        let r = Rate::new(&crate::resilience::RateLimit {
            per_s: 1,
            burst: Some(3),
        })
        .unwrap();
        for _ in 0..3 {
            r.check().unwrap();
        }
        let wait = r.check().unwrap_err();
        assert!(wait <= Duration::from_secs(1));
    }
}

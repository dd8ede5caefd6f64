//! Gateway-wide adaptive load shedding.
//!
//! Two signals, both checked before a request's body is read:
//! - in-flight requests over `max_in_flight` (a hard bound on the memory requests hold);
//! - a standing policy queue: invocations waited longer than `queue_target_ms` for a
//!   slot of the invocation pool, continuously for `queue_interval_ms` (CoDel's test for
//!   a queue that is not draining). New requests that would run policies are shed until
//!   a wait below the target is seen; requests without policies still pass.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::metrics::Metrics;

/// The gateway's admission control (one per pipeline, settings follow reloads).
#[derive(Debug)]
pub(crate) struct Shedder {
    max_in_flight: AtomicU32,
    target_us: AtomicU64,
    interval_us: AtomicU64,
    in_flight: AtomicU32,
    queue: Mutex<Queue>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Since when every wait has been above the target.
    above_since: Option<Instant>,
    last_sample: Option<Instant>,
}

/// A request's place in the pipeline; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Admission(Arc<Shedder>);

impl Drop for Admission {
    fn drop(&mut self) {
        let now = self.0.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.metrics.in_flight(now);
    }
}

impl Shedder {
    pub(crate) fn new(cfg: &super::Overload, metrics: Arc<Metrics>) -> Self {
        let s = Shedder {
            max_in_flight: AtomicU32::new(0),
            target_us: AtomicU64::new(0),
            interval_us: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            queue: Mutex::new(Queue::default()),
            metrics,
        };
        s.set(cfg);
        s
    }

    /// Applies reloaded settings.
    pub(crate) fn set(&self, cfg: &super::Overload) {
        self.max_in_flight
            .store(cfg.max_in_flight, Ordering::Relaxed);
        self.target_us
            .store(cfg.queue_target.as_micros() as u64, Ordering::Relaxed);
        self.interval_us
            .store(cfg.queue_interval.as_micros() as u64, Ordering::Relaxed);
    }

    /// Admits a request, or sheds it with 503 `gateway_overloaded`.
    pub(crate) fn admit(self: &Arc<Self>, runs_policies: bool) -> Result<Admission, Error> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let admission = Admission(self.clone());
        self.metrics.in_flight(now);
        if now > self.max_in_flight.load(Ordering::Relaxed)
            || (runs_policies && self.standing_queue())
        {
            return Err(Error::Shed);
        }
        Ok(admission)
    }

    /// Whether the policy queue has stayed above the target for the interval (and is
    /// still being measured: with no samples for an interval, there is no queue).
    fn standing_queue(&self) -> bool {
        let interval = Duration::from_micros(self.interval_us.load(Ordering::Relaxed));
        let q = self.queue.lock().expect("shedder lock");
        let now = Instant::now();
        q.above_since
            .is_some_and(|t| now.duration_since(t) >= interval)
            && q.last_sample
                .is_some_and(|t| now.duration_since(t) < interval)
    }

    /// Records how long an invocation waited for a slot of the invocation pool.
    pub(crate) fn observe_queue(&self, wait: Duration) {
        let target = Duration::from_micros(self.target_us.load(Ordering::Relaxed));
        let mut q = self.queue.lock().expect("shedder lock");
        let now = Instant::now();
        q.last_sample = Some(now);
        if wait < target {
            q.above_since = None;
        } else if q.above_since.is_none() {
            q.above_since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shedder(max: u32) -> Arc<Shedder> {
        let cfg = crate::resilience::Overload {
            max_in_flight: max,
            queue_target: Duration::from_millis(10),
            queue_interval: Duration::from_millis(20),
        };
        Arc::new(Shedder::new(&cfg, Arc::new(Metrics::new())))
    }

    #[test]
    fn in_flight_is_bounded_and_released() {
        let s = shedder(2);
        let a = s.admit(false).unwrap();
        let _b = s.admit(false).unwrap();
        assert_eq!(s.admit(false).unwrap_err(), Error::Shed);
        drop(a);
        s.admit(false).expect("a place was freed");
    }

    #[test]
    fn a_standing_queue_sheds_policy_work_only() {
        let s = shedder(100);
        s.observe_queue(Duration::from_millis(50));
        assert!(
            s.admit(true).is_ok(),
            "above target, but not for an interval yet"
        );
        std::thread::sleep(Duration::from_millis(25));
        s.observe_queue(Duration::from_millis(50));
        assert_eq!(s.admit(true).unwrap_err(), Error::Shed);
        assert!(s.admit(false).is_ok(), "requests without policies pass");
        s.observe_queue(Duration::from_millis(1));
        assert!(s.admit(true).is_ok(), "a short wait ends it");
    }
}

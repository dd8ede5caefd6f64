//! Retry budgets and upstream latency windows.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long requests and retries are remembered by a [`RetryBudget`].
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Retries (and hedges) a route may add: at most `ratio` per first attempt over the last
/// 10 s, plus `min_per_s`. Retries cannot multiply load when the upstream is failing.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    min_per_s: u32,
    /// Per second: (second start, first attempts, extra attempts).
    seconds: Mutex<VecDeque<(Instant, u32, u32)>>,
}

impl RetryBudget {
    pub(crate) fn new(cfg: Option<&super::Retry>) -> Self {
        RetryBudget {
            ratio: cfg.map_or(0.2, |c| c.budget_ratio),
            min_per_s: cfg.map_or(10, |c| c.min_per_s),
            seconds: Mutex::new(VecDeque::new()),
        }
    }

    fn with_current<R>(&self, f: impl FnOnce(&mut VecDeque<(Instant, u32, u32)>) -> R) -> R {
        let mut s = self.seconds.lock().expect("budget lock");
        let now = Instant::now();
        while s
            .front()
            .is_some_and(|(t, ..)| now.duration_since(*t) >= BUDGET_WINDOW)
        {
            s.pop_front();
        }
        if s.back()
            .is_none_or(|(t, ..)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            s.push_back((now, 0, 0));
        }
        f(&mut s)
    }

    /// Counts a first attempt.
    pub(crate) fn deposit(&self) {
        self.with_current(|s| s.back_mut().expect("current second").1 += 1);
    }

    /// Takes one extra attempt from the budget, if there is one left.
    pub(crate) fn withdraw(&self) -> bool {
        self.with_current(|s| {
            let (firsts, extras) = s.iter().fold((0u64, 0u64), |(f, e), (_, a, b)| {
                (f + u64::from(*a), e + u64::from(*b))
            });
            let allowed = self.ratio * firsts as f64
                + f64::from(self.min_per_s) * BUDGET_WINDOW.as_secs_f64();
            if (extras as f64) < allowed {
                s.back_mut().expect("current second").2 += 1;
                true
            } else {
                false
            }
        })
    }
}

/// Samples kept for percentile hedge delays.
const LATENCY_SAMPLES: usize = 256;
/// Samples needed before a percentile is trusted.
const LATENCY_MIN_SAMPLES: usize = 32;

/// An upstream's recent response-head latencies.
#[derive(Debug, Default)]
pub(crate) struct LatencyWindow {
    samples: Mutex<VecDeque<Duration>>,
}

impl LatencyWindow {
    pub(crate) fn record(&self, d: Duration) {
        let mut s = self.samples.lock().expect("latency lock");
        if s.len() == LATENCY_SAMPLES {
            s.pop_front();
        }
        s.push_back(d);
    }

    /// The `p`th percentile, once enough samples are in.
    pub(crate) fn percentile(&self, p: u8) -> Option<Duration> {
        let s = self.samples.lock().expect("latency lock");
        if s.len() < LATENCY_MIN_SAMPLES {
            return None;
        }
        let mut v: Vec<Duration> = s.iter().copied().collect();
        drop(s);
        let i = (v.len() * usize::from(p) / 100).min(v.len() - 1);
        Some(*v.select_nth_unstable(i).1)
    }

    /// The hedge delay: the configured percentile when known, else `delay_ms`.
    pub(crate) fn hedge_delay(&self, h: &super::Hedge) -> Duration {
        h.percentile
            .and_then(|p| self.percentile(p))
            .unwrap_or(h.delay)
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_share_of_first_attempts() {
        let cfg = crate::resilience::Retry {
            attempts: 3,
            on: Vec::new(),
            backoff: Duration::ZERO,
            budget_ratio: 0.25,
            min_per_s: 0,
        };
        let b = RetryBudget::new(Some(&cfg));
        assert!(!b.withdraw(), "nothing sent, nothing to retry");
        for _ in 0..8 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "2 of 8 is the 25 % budget");
    }

    #[test]
    fn percentile_needs_samples() {
        let w = LatencyWindow::default();
        for i in 1..=31 {
            w.record(Duration::from_millis(i));
        }
        assert_eq!(w.percentile(50), None);
        for i in 32..=100 {
            w.record(Duration::from_millis(i));
        }
        assert_eq!(w.percentile(95), Some(Duration::from_millis(96)));
    }
}

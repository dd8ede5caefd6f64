//! A circuit breaker per upstream: closed, open, half-open.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// The breaker's state, as the `palisade_upstream_breaker_state` gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Requests go through; outcomes are counted.
    Closed = 0,
    /// Requests fail fast.
    Open = 1,
    /// A few probes go through; the rest fail fast.
    HalfOpen = 2,
}

impl BreakerState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

const SLOTS: u32 = 10;

#[derive(Debug)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { sent: u32, succeeded: u32 },
}

/// Outcomes per slot of the sliding window: (slot start, sent, failed).
#[derive(Debug, Default)]
struct Window {
    slots: VecDeque<(Instant, u32, u32)>,
}

impl Window {
    fn add(&mut self, now: Instant, window: Duration, failed: bool) {
        let slot = window / SLOTS;
        while self
            .slots
            .front()
            .is_some_and(|(start, ..)| now.duration_since(*start) >= window)
        {
            self.slots.pop_front();
        }
        match self.slots.back_mut() {
            Some((start, sent, bad)) if now.duration_since(*start) < slot => {
                *sent += 1;
                *bad += u32::from(failed);
            }
            _ => self.slots.push_back((now, 1, u32::from(failed))),
        }
    }

    fn totals(&self) -> (u32, u32) {
        self.slots
            .iter()
            .fold((0, 0), |(s, f), (_, sent, bad)| (s + sent, f + bad))
    }
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    window: Window,
}

/// One upstream's breaker (shared by every route to it, kept across reloads).
#[derive(Debug)]
pub(crate) struct Breaker {
    upstream: String,
    cfg: super::BreakerConfig,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

/// Admission through a breaker; report the outcome with [`Ticket::finish`]. A ticket
/// dropped unfinished (a cancelled hedge, a client gone) counts neither way.
#[derive(Debug)]
pub(crate) struct Ticket {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Ticket {
    /// Records whether the attempt succeeded.
    pub(crate) fn finish(mut self, ok: bool) {
        self.done = true;
        self.breaker.record(self.probe, ok);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release_probe();
        }
    }
}

impl Breaker {
    pub(crate) fn new(upstream: &str, cfg: super::BreakerConfig, metrics: Arc<Metrics>) -> Self {
        metrics.breaker(upstream, BreakerState::Closed, false);
        Breaker {
            upstream: upstream.to_string(),
            cfg,
            metrics,
            inner: Mutex::new(Inner {
                mode: Mode::Closed,
                window: Window::default(),
            }),
        }
    }

    fn set(&self, inner: &mut Inner, mode: Mode) {
        let state = match mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { .. } => BreakerState::Open,
            Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        inner.mode = mode;
        self.metrics.breaker(&self.upstream, state, true);
        tracing::info!(upstream = %self.upstream, state = state.name(), "circuit breaker");
    }

    /// Lets a request through, or says how long until the breaker probes again.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Ticket, Duration> {
        let ticket = |probe| Ticket {
            breaker: self.clone(),
            probe,
            done: false,
        };
        if !self.cfg.enabled {
            return Ok(ticket(false));
        }
        let mut inner = self.inner.lock().expect("breaker lock");
        let now = Instant::now();
        if let Mode::Open { until } = inner.mode {
            if now < until {
                return Err(until - now);
            }
            self.set(
                &mut inner,
                Mode::HalfOpen {
                    sent: 0,
                    succeeded: 0,
                },
            );
        }
        match &mut inner.mode {
            Mode::Closed => Ok(ticket(false)),
            Mode::HalfOpen { sent, .. } if *sent < self.cfg.half_open_requests => {
                *sent += 1;
                Ok(ticket(true))
            }
            // Probes are out: ask again when one could have answered.
            _ => Err(Duration::from_secs(1)),
        }
    }

    fn record(&self, probe: bool, ok: bool) {
        if !self.cfg.enabled {
            return;
        }
        let mut inner = self.inner.lock().expect("breaker lock");
        let now = Instant::now();
        match &mut inner.mode {
            Mode::Closed => {
                let window = self.cfg.window;
                inner.window.add(now, window, !ok);
                let (sent, failed) = inner.window.totals();
                if !ok
                    && sent >= self.cfg.min_requests
                    && f64::from(failed) >= self.cfg.failure_rate * f64::from(sent)
                {
                    self.trip(&mut inner, now);
                }
            }
            Mode::HalfOpen { succeeded, .. } if probe => {
                if !ok {
                    self.trip(&mut inner, now);
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.cfg.half_open_requests {
                        inner.window = Window::default();
                        self.set(&mut inner, Mode::Closed);
                    }
                }
            }
            // Answers to requests let through before the breaker opened.
            _ => {}
        }
    }

    fn trip(&self, inner: &mut Inner, now: Instant) {
        let until = now + self.cfg.open;
        self.set(inner, Mode::Open { until });
    }

    fn release_probe(&self) {
        let mut inner = self.inner.lock().expect("breaker lock");
        if let Mode::HalfOpen { sent, .. } = &mut inner.mode {
            *sent = sent.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Arc<Breaker> {
        let cfg = crate::resilience::BreakerConfig {
            min_requests: 4,
            failure_rate: 0.5,
            open: Duration::from_millis(open_ms),
            half_open_requests: 2,
            ..crate::resilience::BreakerConfig::default()
        };
        Arc::new(Breaker::new("u", cfg, Arc::new(Metrics::new())))
    }

    #[test]
    fn opens_at_the_rate_and_closes_after_probes() {
        let b = breaker(30);
        b.admit().unwrap().finish(true);
        b.admit().unwrap().finish(false);
        b.admit().unwrap().finish(true);
        // 1 of 3 failed and fewer than min_requests: still closed.
        b.admit().unwrap().finish(false);
        // 2 of 4 failed = 0.5: open.
        let wait = b.admit().unwrap_err();
        assert!(wait <= Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(40));
        let p1 = b.admit().expect("first probe");
        let p2 = b.admit().expect("second probe");
        assert!(b.admit().is_err(), "only two probes when half-open");
        p1.finish(true);
        p2.finish(true);
        b.admit().expect("closed again").finish(true);
        let m = b.metrics.encode();
        assert!(
            m.contains(r#"palisade_upstream_breaker_state{upstream="u"} 0"#),
            "{m}"
        );
    }

    #[test]
    fn a_failed_probe_opens_again_and_a_dropped_one_frees_its_slot() {
        let b = breaker(20);
        for _ in 0..4 {
            b.admit().unwrap().finish(false);
        }
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(30));
        drop(b.admit().unwrap());
        drop(b.admit().unwrap());
        let p = b.admit().expect("dropped probes gave their slots back");
        p.finish(false);
        assert!(b.admit().is_err(), "a failed probe reopens");
    }
}

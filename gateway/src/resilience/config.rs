//! What `[server.overload]`, `[upstream.breaker]`, rate limits, `[route.retry]` and
//! `[route.hedge]` may say: the config of this module's guards.

use std::time::Duration;

use serde::Deserialize;

use crate::config::de::millis;

/// `[server.overload]`: when the gateway sheds new work (503 `gateway_overloaded` with
/// `Retry-After`) before memory or queues grow. The admin listener is never shed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overload {
    /// Requests in the pipeline at once, all routes together. By default 4,096.
    #[serde(default = "d::max_in_flight")]
    pub max_in_flight: u32,
    /// Policy queue delay that counts as a standing queue (`queue_target_ms`). By
    /// default 50 ms.
    #[serde(
        rename = "queue_target_ms",
        default = "d::queue_target",
        deserialize_with = "millis"
    )]
    pub queue_target: Duration,
    /// How long the queue delay must stay above the target before new requests that
    /// run policies are shed (`queue_interval_ms`). By default 500 ms.
    #[serde(
        rename = "queue_interval_ms",
        default = "d::queue_interval",
        deserialize_with = "millis"
    )]
    pub queue_interval: Duration,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            max_in_flight: d::max_in_flight(),
            queue_target: d::queue_target(),
            queue_interval: d::queue_interval(),
        }
    }
}

/// A token bucket: `per_s` requests per second sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_s: u32,
    /// Requests allowed at once after a quiet period. By default `per_s`.
    pub burst: Option<u32>,
}

/// `[upstream.breaker]`: opens when, over `window_ms`, at least `min_requests` were sent
/// and `failure_rate` of them failed (connect error, reset, timeout, 502/503/504); while
/// open requests fail fast with 503 `upstream_circuit_open`; after `open_ms` up to
/// `half_open_requests` probes go through, and it closes when they all succeed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breaker {
    /// Whether the breaker is on. By default `true`.
    #[serde(default = "d::yes")]
    pub enabled: bool,
    /// Share of failed requests that opens it, 0 < rate <= 1. By default 0.5.
    #[serde(default = "d::failure_rate")]
    pub failure_rate: f64,
    /// Fewest requests in the window before it may open. By default 20.
    #[serde(default = "d::min_requests")]
    pub min_requests: u32,
    /// The sliding window (`window_ms`). By default 10 s.
    #[serde(
        rename = "window_ms",
        default = "d::breaker_window",
        deserialize_with = "millis"
    )]
    pub window: Duration,
    /// How long it stays open before probing (`open_ms`). By default 5 s.
    #[serde(rename = "open_ms", default = "d::open", deserialize_with = "millis")]
    pub open: Duration,
    /// Probes let through when half-open. By default 3.
    #[serde(default = "d::half_open_requests")]
    pub half_open_requests: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            enabled: true,
            failure_rate: d::failure_rate(),
            min_requests: d::min_requests(),
            window: d::breaker_window(),
            open: d::open(),
            half_open_requests: d::half_open_requests(),
        }
    }
}

/// `[route.retry]`: another attempt after a retryable failure, for idempotent methods
/// only, within the upstream's retry budget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included. By default 2.
    #[serde(default = "d::attempts")]
    pub attempts: u32,
    /// What is retried: `connect`, `reset`, `timeout`, or a status code such as `"503"`.
    /// By default `["connect", "reset", "502", "503", "504"]`.
    #[serde(default = "d::retry_on")]
    pub on: Vec<String>,
    /// Base of the exponential backoff with full jitter, capped at 1 s (`backoff_ms`). By
    /// default 25 ms.
    #[serde(
        rename = "backoff_ms",
        default = "d::backoff",
        deserialize_with = "millis"
    )]
    pub backoff: Duration,
    /// Retries (and hedges) per first attempt this upstream may add, over 10 s. By
    /// default 0.2.
    #[serde(default = "d::budget_ratio")]
    pub budget_ratio: f64,
    /// Retries per second allowed whatever the ratio. By default 10.
    #[serde(default = "d::min_retries_per_s")]
    pub min_per_s: u32,
}

/// `[route.hedge]`: when an idempotent request has no response head after the delay, a
/// second attempt is sent; the first answer wins and the other is cancelled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    /// The delay (`delay_ms`). By default 100 ms.
    #[serde(
        rename = "delay_ms",
        default = "d::hedge_delay",
        deserialize_with = "millis"
    )]
    pub delay: Duration,
    /// Use this percentile (1-99) of the upstream's recent response-head latencies as the
    /// delay once 32 have been seen (`delay_ms` until then). By default none.
    pub percentile: Option<u8>,
}

mod d {
    use std::time::Duration;

    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn max_in_flight() -> u32 {
        4096
    }
    pub(super) fn queue_target() -> Duration {
        Duration::from_millis(50)
    }
    pub(super) fn queue_interval() -> Duration {
        Duration::from_millis(500)
    }
    pub(super) fn failure_rate() -> f64 {
        0.5
    }
    pub(super) fn min_requests() -> u32 {
        20
    }
    pub(super) fn breaker_window() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn open() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn half_open_requests() -> u32 {
        3
    }
    pub(super) fn attempts() -> u32 {
        2
    }
    pub(super) fn retry_on() -> Vec<String> {
        ["connect", "reset", "502", "503", "504"]
            .map(String::from)
            .to_vec()
    }
    pub(super) fn backoff() -> Duration {
        Duration::from_millis(25)
    }
    pub(super) fn budget_ratio() -> f64 {
        0.2
    }
    pub(super) fn min_retries_per_s() -> u32 {
        10
    }
    pub(super) fn hedge_delay() -> Duration {
        Duration::from_millis(100)
    }
}

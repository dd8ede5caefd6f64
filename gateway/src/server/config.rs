//! `[server.connections]`: how long a connection may stay silent or idle, and how many
//! may be open, per listener and per peer address.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[server.connections]`, parsed. Every limit is on by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// A connection with no request in progress (an HTTP/1.1 keep-alive connection
    /// between requests, an HTTP/2 connection without open streams) is closed after
    /// this long; HTTP/2 gets `GOAWAY` first. Written `idle_timeout_ms`. By default
    /// 60,000 ms.
    #[serde(
        rename = "idle_timeout_ms",
        deserialize_with = "millis",
        default = "d::idle_timeout"
    )]
    pub idle_timeout: Duration,
    /// HTTP/2: a `PING` is sent after this long without frames from the client.
    /// Written `http2_keep_alive_interval_ms`. By default 20,000 ms.
    #[serde(
        rename = "http2_keep_alive_interval_ms",
        deserialize_with = "millis",
        default = "d::keep_alive_interval"
    )]
    pub http2_keep_alive_interval: Duration,
    /// HTTP/2: the connection is closed when a `PING` is not acknowledged within this
    /// long. Written `http2_keep_alive_timeout_ms`. By default 10,000 ms.
    #[serde(
        rename = "http2_keep_alive_timeout_ms",
        deserialize_with = "millis",
        default = "d::keep_alive_timeout"
    )]
    pub http2_keep_alive_timeout: Duration,
    /// Connections open at once on the proxy listener. By default 10,000 (lowered at
    /// start when the file descriptor limit cannot hold them).
    #[serde(default = "d::max_per_listener")]
    pub max_per_listener: usize,
    /// Connections open at once from one peer IP address on the proxy listener. By
    /// default 1,024 (raise it behind a load balancer or NAT).
    #[serde(default = "d::max_per_peer")]
    pub max_per_peer: usize,
    /// Connections open at once on the admin listener. By default 256.
    #[serde(default = "d::admin_max_per_listener")]
    pub admin_max_per_listener: usize,
    /// Connections open at once from one peer IP address on the admin listener. By
    /// default 32.
    #[serde(default = "d::admin_max_per_peer")]
    pub admin_max_per_peer: usize,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            idle_timeout: d::idle_timeout(),
            http2_keep_alive_interval: d::keep_alive_interval(),
            http2_keep_alive_timeout: d::keep_alive_timeout(),
            max_per_listener: d::max_per_listener(),
            max_per_peer: d::max_per_peer(),
            admin_max_per_listener: d::admin_max_per_listener(),
            admin_max_per_peer: d::admin_max_per_peer(),
        }
    }
}

impl Connections {
    /// What is wrong with these settings, one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let positive = [
            ("idle_timeout_ms", self.idle_timeout),
            (
                "http2_keep_alive_interval_ms",
                self.http2_keep_alive_interval,
            ),
            ("http2_keep_alive_timeout_ms", self.http2_keep_alive_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                out.push(format!("{name} must be at least 1"));
            }
        }
        let counts = [
            ("max_per_listener", self.max_per_listener),
            ("max_per_peer", self.max_per_peer),
            ("admin_max_per_listener", self.admin_max_per_listener),
            ("admin_max_per_peer", self.admin_max_per_peer),
        ];
        for (name, value) in counts {
            if value == 0 {
                out.push(format!("{name} must be at least 1"));
            }
        }
        out
    }
}

/// One listener's limits, lowered from `[server]` and `[server.connections]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From accept to the end of the first request head (TLS handshake included), and
    /// from the first byte of a later HTTP/1.1 head to its end.
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_per_listener: usize,
    pub(crate) max_per_peer: usize,
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

mod d {
    use std::time::Duration;

    pub(super) fn idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn keep_alive_interval() -> Duration {
        Duration::from_secs(20)
    }
    pub(super) fn keep_alive_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn max_per_listener() -> usize {
        10_000
    }
    pub(super) fn max_per_peer() -> usize {
        1024
    }
    pub(super) fn admin_max_per_listener() -> usize {
        256
    }
    pub(super) fn admin_max_per_peer() -> usize {
        32
    }
}

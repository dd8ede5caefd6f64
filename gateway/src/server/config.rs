//! `[server]` and `[server.connections]`: the listeners, their parse limits and
//! deadlines, how long a connection may stay silent or idle, and how many may be open,
//! per listener and per peer address.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::Scheme;
use crate::config::de::{millis, rebase};
use crate::resilience::Overload;

/// `[server]`, typed. Relative paths are the config file's directory's (see
/// [`Config::rebase`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The proxy listener, `ip:port`.
    pub listen: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`), `ip:port`. By default none.
    pub admin: Option<SocketAddr>,
    /// TLS 1.3 on the proxy listener. By default plain HTTP (HTTP/1.1 and h2c).
    pub tls: Option<Tls>,
    /// Time allowed for a connection's first request head from accept (first bytes and
    /// TLS handshake included), and for a later HTTP/1.1 head from its first byte. By
    /// default 10,000 ms.
    #[serde(
        rename = "header_timeout_ms",
        default = "d::header_timeout",
        deserialize_with = "millis"
    )]
    pub header_timeout: Duration,
    /// Time allowed to send the whole request body (`body_timeout_ms`). By default 30 s.
    #[serde(
        rename = "body_timeout_ms",
        default = "d::body_timeout",
        deserialize_with = "millis"
    )]
    pub body_timeout: Duration,
    /// Largest request head (HTTP/1.1 buffer; HTTP/2 header list), bytes. By default 16 KiB.
    #[serde(default = "d::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request header fields. By default 100.
    #[serde(default = "d::max_headers")]
    pub max_headers: usize,
    /// Most concurrent HTTP/2 streams per connection. By default 100.
    #[serde(default = "d::max_streams")]
    pub max_concurrent_streams: u32,
    /// Time in-flight requests get to finish at shutdown (`shutdown_grace_ms`). By
    /// default 30 s.
    #[serde(
        rename = "shutdown_grace_ms",
        default = "d::shutdown_grace",
        deserialize_with = "millis"
    )]
    pub shutdown_grace: Duration,
    /// Schemes the admin API (`/v1/...`) accepts. By default `["api_key", "jwt"]`.
    /// `/metrics` and `/healthz` answer without credentials.
    #[serde(default = "d::admin_auth")]
    pub admin_auth: Vec<Scheme>,
    /// Gateway-wide load shedding (`docs/resilience.md`).
    #[serde(default)]
    pub overload: Overload,
    /// Peers (IP addresses or CIDR ranges) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` the gateway believes and extends. From anyone else those
    /// headers are removed and replaced by what the gateway saw. By default none.
    #[serde(default)]
    pub trusted_proxies: Vec<TrustedProxy>,
    /// The header a trusted proxy's hops are read from: `x-forwarded-for` (the default)
    /// or `forwarded` (RFC 7239). Only that one is read.
    #[serde(default)]
    pub forwarded_header: crate::pipeline::ForwardedHeader,
    /// Every connection to `listen` starts with a PROXY protocol v2 header from a peer in
    /// `trusted_proxies`, whose source address is the client's. By default `false`.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Idle timeouts and connection caps (`[server.connections]`).
    #[serde(default)]
    pub connections: Connections,
}

/// `[server.tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl Default for Config {
    /// Every default, listening on `127.0.0.1:0` (a port the system picks).
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            tls: None,
            header_timeout: d::header_timeout(),
            body_timeout: d::body_timeout(),
            max_header_bytes: d::max_header_bytes(),
            max_headers: d::max_headers(),
            max_concurrent_streams: d::max_streams(),
            shutdown_grace: d::shutdown_grace(),
            admin_auth: d::admin_auth(),
            overload: Overload::default(),
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            proxy_protocol: false,
            connections: Connections::default(),
        }
    }
}

impl Config {
    /// Makes the TLS file paths relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            tls.cert = rebase(base, &tls.cert);
            tls.key = rebase(base, &tls.key);
        }
    }
}

/// An IP address or a CIDR range, IPv4 or IPv6 (`trusted_proxies`, `allow_ips`,
/// `deny_ips`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr(pub ipnet::IpNet);

/// A `trusted_proxies` entry.
pub type TrustedProxy = Cidr;

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(p: String) -> Result<Self, String> {
        p.parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(|net| Cidr(canonical(net)))
            .map_err(|_| format!("`{p}` is not an IP address or CIDR range"))
    }
}

/// An IPv4-mapped IPv6 range (`::ffff:192.0.2.0/120`) as the IPv4 range it is: client
/// addresses are compared in that form, so a mapped entry would otherwise never match.
fn canonical(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, |v4| ipnet::IpNet::V4(v4.trunc())),
        other => other,
    }
}

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

mod d {
    use std::time::Duration;

    pub(super) fn header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn body_timeout() -> Duration {
        crate::pipeline::BodyLimits::default().body_timeout
    }
    pub(super) fn max_header_bytes() -> usize {
        16 * 1024
    }
    pub(super) fn max_headers() -> usize {
        100
    }
    pub(super) fn max_streams() -> u32 {
        100
    }
    pub(super) fn shutdown_grace() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn admin_auth() -> Vec<crate::auth::Scheme> {
        vec![crate::auth::Scheme::ApiKey, crate::auth::Scheme::Jwt]
    }

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

//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels are configuration names only (tenant, route, policy module, error kind); no
//! path, header or body value ever becomes a label.

use std::time::Duration;

use palisade_runtime::Stats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    tenant: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    tenant: String,
    route: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant: String,
    route: String,
    policy: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    tenant: String,
    route: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamKindLabels {
    upstream: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamStateLabels {
    upstream: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemaLabels {
    tenant: String,
    route: String,
    side: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassifiedLabels {
    tenant: String,
    route: String,
    classification: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitOnlyLabels {
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkErrorLabels {
    sink: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvoyLabels {
    tenant: String,
    route: String,
    message: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 100 us .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// How a policy invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// It let the message go on.
    Continue,
    /// It answered itself (a deny, say).
    Respond,
    /// It failed; the runtime's error kind (`fuel_exhausted`, `trap`, ...).
    Error(&'static str),
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histograms<RouteLabels>,
    policy_invocations: Family<OutcomeLabels, Counter>,
    policy_fuel: Family<PolicyLabels, Counter>,
    policy_duration: Histograms<PolicyLabels>,
    policy_traps: Family<OutcomeLabels, Counter>,
    limit_hits: Family<LimitLabels, Counter>,
    schema_failures: Family<SchemaLabels, Counter>,
    classified: Family<ClassifiedLabels, Counter>,
    in_flight: Gauge,
    breaker_state: Family<UpstreamLabels, Gauge>,
    breaker_transitions: Family<UpstreamStateLabels, Counter>,
    upstream_in_flight: Family<UpstreamLabels, Gauge>,
    upstream_attempts: Family<UpstreamKindLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_closed: Family<ClosedLabels, Counter>,
    fleet_redis_up: Gauge,
    fleet_errors: Family<ErrorLabels, Counter>,
    fleet_local: Family<LimitOnlyLabels, Counter>,
    export_blocks: Family<SinkLabels, Counter>,
    export_lag: Family<SinkLabels, Gauge>,
    export_errors: Family<SinkErrorLabels, Counter>,
    envoy_message: Histograms<EnvoyLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_buckets),
            policy_invocations: Family::default(),
            policy_fuel: Family::default(),
            policy_duration: Family::new_with_constructor(latency_buckets),
            policy_traps: Family::default(),
            limit_hits: Family::default(),
            schema_failures: Family::default(),
            classified: Family::default(),
            in_flight: Gauge::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            upstream_in_flight: Family::default(),
            upstream_attempts: Family::default(),
            connections_open: Family::default(),
            connections_closed: Family::default(),
            fleet_redis_up: Gauge::default(),
            fleet_errors: Family::default(),
            fleet_local: Family::default(),
            export_blocks: Family::default(),
            export_lag: Family::default(),
            export_errors: Family::default(),
            envoy_message: Family::new_with_constructor(latency_buckets),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests by tenant, route and status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response head",
            m.latency.clone(),
        );
        registry.register(
            "policy_invocations",
            "Policy invocations by outcome (continue, respond, or the error kind)",
            m.policy_invocations.clone(),
        );
        registry.register(
            "policy_fuel",
            "Fuel burned by policies",
            m.policy_fuel.clone(),
        );
        registry.register(
            "policy_duration_seconds",
            "Policy invocation time",
            m.policy_duration.clone(),
        );
        registry.register(
            "policy_traps",
            "Policy failures by kind (trap, fuel_exhausted, memory_limit, deadline, ...)",
            m.policy_traps.clone(),
        );
        registry.register(
            "limit_hits",
            "Requests refused by a limit (body size, timeouts, concurrency, rate, shedding)",
            m.limit_hits.clone(),
        );
        registry.register(
            "schema_failures",
            "Bodies that failed their route's JSON Schema, by side (request, response) and outcome (refused, reported)",
            m.schema_failures.clone(),
        );
        registry.register(
            "classified_requests",
            "Requests by the highest data classification label they touched",
            m.classified.clone(),
        );
        registry.register(
            "in_flight",
            "Requests in the pipeline (the load shedder's count)",
            m.in_flight.clone(),
        );
        registry.register(
            "upstream_breaker_state",
            "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        registry.register(
            "upstream_breaker_transitions",
            "Circuit breaker state changes per upstream, by the state entered",
            m.breaker_transitions.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Requests in flight per upstream (its pool's share of max_in_flight)",
            m.upstream_in_flight.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Extra upstream attempts: retry, hedge, hedge_won, budget_exhausted",
            m.upstream_attempts.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open per listener (proxy, admin)",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections closed per listener, by reason: client, idle, silent, \
             header_timeout, response_deadline, shed, refused (at the caps), tls_handshake, \
             shutdown",
            m.connections_closed.clone(),
        );
        registry.register(
            "fleet_redis_up",
            "1 while the fleet's Redis is reachable and rate limits and fuel budgets are shared; 0 while each gateway counts alone",
            m.fleet_redis_up.clone(),
        );
        registry.register(
            "fleet_redis_errors",
            "Failed calls to the fleet's Redis, by kind (timeout, io-error, script, ...)",
            m.fleet_errors.clone(),
        );
        registry.register(
            "fleet_local_decisions",
            "Shared-limit decisions made by this gateway alone because Redis could not answer",
            m.fleet_local.clone(),
        );
        registry.register(
            "export_blocks",
            "Audit blocks acknowledged by each export sink",
            m.export_blocks.clone(),
        );
        registry.register(
            "export_lag_blocks",
            "Audit blocks not yet acknowledged by each export sink (the ledger's head minus its cursor)",
            m.export_lag.clone(),
        );
        registry.register(
            "export_errors",
            "Audit export failures per sink, by kind: sink, database, cursor_mismatch, chain, cursor_moved",
            m.export_errors.clone(),
        );
        registry.register(
            "envoy_message_seconds",
            "Time Palisade took to answer each message of an Envoy exchange (what it adds to \
             Envoy's request), by message: request_headers, request_body, response_headers, \
             response_body (ext_proc), check (ext_authz)",
            m.envoy_message.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a finished request.
    pub fn request(&self, tenant: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                tenant: tenant.into(),
                route: route.into(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                tenant: tenant.into(),
                route: route.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a policy invocation.
    pub fn policy(
        &self,
        tenant: &str,
        route: &str,
        policy: &str,
        outcome: PolicyOutcome,
        stats: &Stats,
    ) {
        let kind = match outcome {
            PolicyOutcome::Continue => "continue",
            PolicyOutcome::Respond => "respond",
            PolicyOutcome::Error(kind) => kind,
        };
        let labels = PolicyLabels {
            tenant: tenant.into(),
            route: route.into(),
            policy: policy.into(),
        };
        let outcome_labels = OutcomeLabels {
            tenant: tenant.into(),
            route: route.into(),
            policy: policy.into(),
            outcome: kind.into(),
        };
        self.policy_invocations.get_or_create(&outcome_labels).inc();
        if matches!(outcome, PolicyOutcome::Error(_)) {
            self.policy_traps.get_or_create(&outcome_labels).inc();
        }
        self.policy_fuel.get_or_create(&labels).inc_by(stats.fuel);
        self.policy_duration
            .get_or_create(&labels)
            .observe(stats.duration.as_secs_f64());
    }

    /// Counts a request refused by a limit (`body_too_large`, `header_timeout`, ...).
    pub fn limit(&self, tenant: &str, route: &str, limit: &str) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                tenant: tenant.into(),
                route: route.into(),
                limit: limit.into(),
            })
            .inc();
    }

    /// Counts a body that failed its schema.
    pub(crate) fn schema_failure(&self, tenant: &str, route: &str, side: &str, outcome: &str) {
        self.schema_failures
            .get_or_create(&SchemaLabels {
                tenant: tenant.into(),
                route: route.into(),
                side: side.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a request by the highest classification label it touched.
    pub(crate) fn classified(&self, tenant: &str, route: &str, label: &str) {
        self.classified
            .get_or_create(&ClassifiedLabels {
                tenant: tenant.into(),
                route: route.into(),
                classification: label.into(),
            })
            .inc();
    }

    /// Sets the pipeline's in-flight count.
    pub(crate) fn in_flight(&self, n: u32) {
        self.in_flight.set(i64::from(n));
    }

    /// Sets an upstream's breaker state; `transition` counts a change.
    pub(crate) fn breaker(
        &self,
        upstream: &str,
        state: crate::resilience::BreakerState,
        transition: bool,
    ) {
        let labels = UpstreamLabels {
            upstream: upstream.into(),
        };
        self.breaker_state.get_or_create(&labels).set(state as i64);
        if transition {
            self.breaker_transitions
                .get_or_create(&UpstreamStateLabels {
                    upstream: upstream.into(),
                    state: state.name().into(),
                })
                .inc();
        }
    }

    /// Moves an upstream's in-flight count by `delta`.
    pub(crate) fn upstream_in_flight(&self, upstream: &str, delta: i64) {
        self.upstream_in_flight
            .get_or_create(&UpstreamLabels {
                upstream: upstream.into(),
            })
            .inc_by(delta);
    }

    /// Counts an extra attempt (`retry`, `hedge`, `hedge_won`, `budget_exhausted`).
    pub(crate) fn upstream_attempt(&self, upstream: &str, kind: &str) {
        self.upstream_attempts
            .get_or_create(&UpstreamKindLabels {
                upstream: upstream.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Sets a listener's count of open connections.
    pub(crate) fn connections_open(&self, listener: &str, n: usize) {
        self.connections_open
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .set(n as i64);
    }

    /// Counts a closed (or refused) connection.
    pub(crate) fn connection_closed(&self, listener: &str, reason: &str) {
        self.connections_closed
            .get_or_create(&ClosedLabels {
                listener: listener.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Whether the fleet's Redis is reachable.
    pub(crate) fn fleet_redis_up(&self, up: bool) {
        self.fleet_redis_up.set(i64::from(up));
    }

    /// Counts a failed call to the fleet's Redis.
    pub(crate) fn fleet_error(&self, kind: &str) {
        self.fleet_errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    /// Counts a shared limit decided locally (`tenant_rate_limited`, ...).
    pub(crate) fn fleet_local_decision(&self, limit: &str) {
        self.fleet_local
            .get_or_create(&LimitOnlyLabels {
                limit: limit.into(),
            })
            .inc();
    }

    /// Counts blocks a sink acknowledged.
    pub(crate) fn export_sent(&self, sink: &str, blocks: u64) {
        self.export_blocks
            .get_or_create(&SinkLabels { sink: sink.into() })
            .inc_by(blocks);
    }

    /// Sets how many blocks a sink has yet to acknowledge.
    pub(crate) fn export_lag(&self, sink: &str, blocks: u64) {
        self.export_lag
            .get_or_create(&SinkLabels { sink: sink.into() })
            .set(blocks.min(i64::MAX as u64) as i64);
    }

    /// Counts a failed export step ([`crate::export::Error::kind`]).
    pub(crate) fn export_error(&self, sink: &str, kind: &str) {
        self.export_errors
            .get_or_create(&SinkErrorLabels {
                sink: sink.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Times one answer to Envoy (`message`: `request_headers`, ..., `check`).
    pub(crate) fn envoy_message(&self, tenant: &str, route: &str, message: &str, took: Duration) {
        self.envoy_message
            .get_or_create(&EnvoyLabels {
                tenant: tenant.into(),
                route: route.into(),
                message: message.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

//! Per-invocation resource limits. On by default; turning one off is explicit.

use std::time::Duration;

/// The limits one invocation runs under.
///
/// Every limit is on by default. The defaults suit a gateway transform over bodies
/// up to a few MiB; tighten them per route. Turning fuel off is explicit
/// ([`Limits::unlimited_fuel`]); every other limit can only be raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    fuel: Option<u64>,
    memory: u64,
    table_elements: u64,
    instances: usize,
    tables: usize,
    memories: usize,
    timeout: Duration,
    max_output: u64,
    max_headers: usize,
    max_head_bytes: u64,
    max_log_bytes: usize,
    max_host_calls: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Some(Self::DEFAULT_FUEL),
            memory: Self::DEFAULT_MEMORY,
            table_elements: 100_000,
            instances: 32,
            tables: 32,
            memories: 4,
            timeout: Duration::from_millis(1_000),
            max_output: 16 << 20,
            max_headers: 1_000,
            max_head_bytes: 256 << 10,
            max_log_bytes: 16 << 10,
            max_host_calls: 100_000,
        }
    }
}

impl Limits {
    /// The default fuel budget: 10^9 units (one unit is roughly one Wasm instruction,
    /// or one Luau VM instruction), about a second of guest work.
    pub const DEFAULT_FUEL: u64 = 1_000_000_000;
    /// The default linear-memory limit: 64 MiB.
    pub const DEFAULT_MEMORY: u64 = 64 << 20;
    /// Fuel charged per second of a run that failed before its own count was complete:
    /// 10^9, the rate [`Limits::DEFAULT_FUEL`] assumes. Such a run reports at least
    /// this much per second it ran in [`Stats::fuel`](crate::Stats::fuel).
    pub const FUEL_PER_SECOND: u64 = 1_000_000_000;

    /// Sets the fuel budget (instruction budget). By default this is `Some(1_000_000_000)`.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Runs without a fuel budget: only the deadline stops a runaway guest.
    /// Fuel is on by default; this is the one way to turn it off.
    pub fn unlimited_fuel(mut self) -> Self {
        self.fuel = None;
        self
    }

    /// Sets the maximum bytes of linear memory (Wasm) or heap (Lua). By default 64 MiB.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Sets the maximum elements of any one table. By default 100,000.
    pub fn table_elements(mut self, elements: u64) -> Self {
        self.table_elements = elements;
        self
    }

    /// Sets the maximum core instances, tables and memories of one invocation.
    /// By default 32 instances, 32 tables, 4 memories (a componentized guest uses a few
    /// instances for its adapters).
    pub fn counts(mut self, instances: usize, tables: usize, memories: usize) -> Self {
        self.instances = instances;
        self.tables = tables;
        self.memories = memories;
        self
    }

    /// Sets the wall-clock deadline. By default 1 second.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the maximum bytes a guest may return (body plus head). By default 16 MiB.
    pub fn max_output(mut self, bytes: u64) -> Self {
        self.max_output = bytes;
        self
    }

    /// Sets the most headers a guest may return in one message. By default 1,000 (far
    /// below what `http::HeaderMap` holds).
    pub fn max_headers(mut self, headers: usize) -> Self {
        self.max_headers = headers;
        self
    }

    /// Sets the maximum bytes of the head a guest returns: method, path, query, header
    /// names and values together. By default 256 KiB. The head also counts against
    /// [`Limits::max_output`].
    pub fn max_head_bytes(mut self, bytes: u64) -> Self {
        self.max_head_bytes = bytes;
        self
    }

    /// Sets the maximum bytes of log text kept per invocation. By default 16 KiB;
    /// lines past it are dropped and counted.
    pub fn max_log_bytes(mut self, bytes: usize) -> Self {
        self.max_log_bytes = bytes;
        self
    }

    /// Sets the maximum host calls per invocation. By default 100,000.
    pub fn max_host_calls(mut self, calls: u64) -> Self {
        self.max_host_calls = calls;
        self
    }

    /// The fuel budget, `None` when unlimited.
    pub fn fuel_budget(&self) -> Option<u64> {
        self.fuel
    }
    /// The memory limit in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory
    }
    /// The table-element limit.
    pub fn table_element_limit(&self) -> u64 {
        self.table_elements
    }
    /// Instance, table and memory count limits.
    pub fn count_limits(&self) -> (usize, usize, usize) {
        (self.instances, self.tables, self.memories)
    }
    /// The wall-clock deadline.
    pub fn deadline(&self) -> Duration {
        self.timeout
    }
    /// The output cap in bytes.
    pub fn output_limit(&self) -> u64 {
        self.max_output
    }
    /// The most headers a guest may return.
    pub fn header_limit(&self) -> usize {
        self.max_headers
    }
    /// The head cap in bytes.
    pub fn head_limit(&self) -> u64 {
        self.max_head_bytes
    }
    /// The log cap in bytes.
    pub fn log_limit(&self) -> usize {
        self.max_log_bytes
    }
    /// The host-call bound.
    pub fn host_call_limit(&self) -> u64 {
        self.max_host_calls
    }
}

/// The fuel a run of `duration` is charged at least when it failed before its own
/// count was complete ([`Limits::FUEL_PER_SECOND`]).
pub(crate) fn fuel_for_time(duration: Duration) -> u64 {
    let fuel = duration.as_nanos() * u128::from(Limits::FUEL_PER_SECOND) / 1_000_000_000;
    u64::try_from(fuel).unwrap_or(u64::MAX)
}

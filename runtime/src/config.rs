//! Engine-wide configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limits;

/// Engine-wide settings: how modules are admitted and compiled, and the default
/// [`Limits`] of every policy.
///
/// ```
/// use palisade_runtime::{Config, Limits};
/// use std::time::Duration;
///
/// let config = Config::new()
///     .default_limits(Limits::default().timeout(Duration::from_millis(50)))
///     .max_module_size(4 << 20);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) default_limits: Limits,
    pub(crate) max_module_size: u64,
    pub(crate) max_functions: u32,
    pub(crate) max_function_size: u32,
    pub(crate) max_nesting: u32,
    pub(crate) max_wasm_stack: usize,
    pub(crate) epoch_tick: Duration,
    pub(crate) pool_instances: u32,
    pub(crate) pool_max_memory: u64,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) wasi: bool,
    pub(crate) consume_fuel: bool,
    pub(crate) epoch_interruption: bool,
    pub(crate) pooling: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_limits: Limits::default(),
            max_module_size: 16 << 20,
            max_functions: 50_000,
            max_function_size: 4 << 20,
            max_nesting: 1_000,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(1),
            pool_instances: 1_000,
            pool_max_memory: 4 << 30,
            cache_dir: None,
            wasi: true,
            consume_fuel: true,
            epoch_interruption: true,
            pooling: true,
        }
    }
}

impl Config {
    /// The default configuration: every limit on, every default documented below.
    pub fn new() -> Self {
        Self::default()
    }

    /// The limits a policy runs under unless it sets its own. By default [`Limits::default`].
    pub fn default_limits(mut self, limits: Limits) -> Self {
        self.default_limits = limits;
        self
    }

    /// The largest module accepted, in bytes. Checked before parsing. By default 16 MiB.
    pub fn max_module_size(mut self, bytes: u64) -> Self {
        self.max_module_size = bytes;
        self
    }

    /// Compile bounds checked before compiling: the most functions across all core
    /// modules (by default 50,000), the largest function body (by default 4 MiB) and the
    /// deepest block nesting (by default 1,000). Wasmtime treats compile-time resource use
    /// as the embedder's concern; these bounds are how Palisade keeps it in check.
    pub fn compile_bounds(mut self, functions: u32, function_size: u32, nesting: u32) -> Self {
        self.max_functions = functions;
        self.max_function_size = function_size;
        self.max_nesting = nesting;
        self
    }

    /// The maximum Wasm stack in bytes, for every policy of this engine (Wasmtime sets
    /// the stack limit per engine, not per store). By default 512 KiB.
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// How often the epoch ticker advances, which is the granularity of deadlines.
    /// By default 1 ms.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick.max(Duration::from_micros(100));
        self
    }

    /// The pooling allocator's capacity: concurrent component instances (by default 1,000)
    /// and the largest memory any policy may be given (by default 4 GiB, the whole 32-bit
    /// space, so that the per-policy [`Limits::memory`] is what refuses a large memory).
    /// Slots are virtual-address reservations, not resident memory.
    pub fn pool(mut self, instances: u32, max_memory: u64) -> Self {
        self.pool_instances = instances;
        self.pool_max_memory = max_memory;
        self
    }

    /// A directory for precompiled artifacts, keyed by module SHA-256 and the engine's
    /// compatibility hash and authenticated with a key kept in the directory. By default
    /// none: modules are compiled at load.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Compiles without fuel metering: [`Limits`] fuel budgets are then not enforced and
    /// only the deadline stops a runaway guest. Metering is on by default; this exists
    /// to measure its cost (`benches/`) and for embedders who bound CPU otherwise.
    pub fn without_fuel_metering(mut self) -> Self {
        self.consume_fuel = false;
        self
    }

    /// Compiles without epoch checks: deadlines are then not enforced and only fuel
    /// stops a runaway guest. On by default; this exists to measure its cost.
    pub fn without_deadlines(mut self) -> Self {
        self.epoch_interruption = false;
        self
    }

    /// Wasmtime's own defaults instead of Palisade's: the on-demand instance allocator
    /// (no pool), no fuel metering, no epoch deadlines. Memory limits still apply. This
    /// is the "raw wasmtime" baseline of `benches/`; do not serve tenants with it.
    #[doc(hidden)]
    pub fn wasmtime_defaults(mut self) -> Self {
        self.pooling = false;
        self.consume_fuel = false;
        self.epoch_interruption = false;
        self
    }

    /// Whether guests built for WASI 0.2 may load. They run with a deny-all context: no
    /// preopens, environment, arguments, network or stdin; a frozen clock; a fixed-seed
    /// random source; stdout and stderr go to the bounded invocation log. By default `true`.
    pub fn wasi(mut self, allow: bool) -> Self {
        self.wasi = allow;
        self
    }
}

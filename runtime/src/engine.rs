//! The shared engine: compiler settings, the pooling allocator, the epoch ticker,
//! the host linkers and the artifact cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::ArtifactCache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::host::{self, StoreState};
use crate::validate::TYPES_INTERFACE;

/// Table elements of a pool slot. Tables are limited per policy by the limiter
/// ([`crate::Limits::table_elements`]); this only sizes the pool's reservation.
const POOL_TABLE_ELEMENTS: usize = 1 << 20;

/// A compilation environment shared by every policy. Cheap to clone.
///
/// Creating an engine starts a background thread that advances the epoch every
/// [`Config::epoch_tick`]; it stops when the engine and every policy compiled with
/// it are dropped.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) config: Config,
    /// Links the Palisade host interface only.
    pub(crate) linker: Linker<StoreState>,
    /// Links the host interface plus deny-all WASI, for guests built for WASI.
    pub(crate) wasi_linker: Linker<StoreState>,
    pub(crate) cache: Option<ArtifactCache>,
}

/// Bytes of each pooled memory and table slot kept mapped (zeroed) between instances.
const KEEP_RESIDENT: usize = 512 << 10;

impl Engine {
    /// Builds an engine from `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] when Wasmtime rejects the settings (for example when the
    /// pooling allocator cannot reserve its memory), [`Error::Io`] when the cache
    /// directory cannot be opened.
    pub fn new(config: &Config) -> Result<Self> {
        let mut wt = wasmtime::Config::new();
        wt.consume_fuel(config.consume_fuel)
            .epoch_interruption(config.epoch_interruption)
            .max_wasm_stack(config.max_wasm_stack)
            // Guests called from async code run on a fiber stack: the guest's own stack
            // plus room for the host functions it calls.
            .async_stack_size(config.max_wasm_stack.saturating_add(1 << 20))
            .wasm_component_model(true)
            // Memories start as copy-on-write mappings of the module's initial image.
            .memory_init_cow(true);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.pool_instances)
            .total_core_instances(config.pool_instances.saturating_mul(8))
            .total_memories(config.pool_instances.saturating_mul(2))
            .total_tables(config.pool_instances.saturating_mul(4))
            .total_stacks(config.pool_instances)
            .max_memory_size(config.pool_max_memory as usize)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(64)
            .table_elements(POOL_TABLE_ELEMENTS)
            // A freed slot's pages (up to KEEP_RESIDENT) are reset in place and stay
            // mapped, instead of being returned with madvise: the next instance (of any
            // module) starts from its pristine image either way, without the page
            // faults of fresh mappings. See `dirty_page_scan` for which pages.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(dirty_page_scan());
        if config.pooling {
            wt.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let wasmtime = wasmtime::Engine::new(&wt).map_err(|e| Error::Engine(format!("{e:#}")))?;

        let linker = Self::linker(&wasmtime, false)?;
        let wasi_linker = Self::linker(&wasmtime, true)?;
        let cache = config
            .cache_dir
            .as_deref()
            .map(ArtifactCache::open)
            .transpose()?;
        spawn_ticker(&wasmtime, config.epoch_tick);
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime,
                config: config.clone(),
                linker,
                wasi_linker,
                cache,
            }),
        })
    }

    fn linker(engine: &wasmtime::Engine, wasi: bool) -> Result<Linker<StoreState>> {
        let mut linker = Linker::new(engine);
        let link = |linker: &mut Linker<StoreState>| -> wasmtime::Result<()> {
            // `types` holds only type definitions, but a component importing it
            // still needs the instance to exist.
            linker.instance(TYPES_INTERFACE)?;
            host::add_to_linker(linker)?;
            if wasi {
                host::add_wasi_to_linker(linker)?;
            }
            Ok(())
        };
        link(&mut linker).map_err(|e| Error::Engine(format!("linking host functions: {e:#}")))?;
        Ok(linker)
    }

    /// The configuration this engine was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Whether teardown resets only the pages a guest wrote (`PAGEMAP_SCAN`, Linux 6.7+), so
/// that it costs what the guest touched rather than `KEEP_RESIDENT` bytes of `memset`.
///
/// Only on a host without swap: the scan finds written pages that are *present*, and a
/// written page the kernel swapped out is not, so it would keep the last guest's bytes for
/// the next instance of the slot (wasmtime 48; bytecodealliance/wasmtime#14357). With any
/// swap device active at start (`/proc/swaps`, zram included) every slot is reset in full.
/// Swap enabled later is not seen: restart the process after `swapon` (docs/security.md).
fn dirty_page_scan() -> wasmtime::Enabled {
    // Not Linux, or no /proc: the scan is unavailable there anyway.
    let swap = std::fs::read_to_string("/proc/swaps").map_or(true, |s| swap_active(&s));
    if swap {
        tracing::info!("swap is on: pooled slots are reset in full at teardown (no PAGEMAP_SCAN)");
        wasmtime::Enabled::No
    } else {
        wasmtime::Enabled::Auto
    }
}

/// Whether `/proc/swaps` lists a swap device or file (its first line is the header).
fn swap_active(proc_swaps: &str) -> bool {
    proc_swaps.lines().skip(1).any(|l| !l.trim().is_empty())
}

/// Advances the epoch (and the coarse clock) every `tick` while anything still holds
/// the engine.
fn spawn_ticker(engine: &wasmtime::Engine, tick: std::time::Duration) {
    let weak = engine.weak();
    advance_coarse_clock();
    thread::Builder::new()
        .name("palisade-epoch".into())
        .spawn(move || {
            loop {
                thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => {
                        engine.increment_epoch();
                        advance_coarse_clock();
                    }
                    None => break,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Microseconds since [`clock_start`], as of the last tick of any engine's ticker: a
/// clock the Lua interrupt reads at every tick for the price of a load (reading the
/// real clock there tripled the cost of a tick). It lags real time by at most a tick
/// (1 ms by default) while an engine is alive; the Lua interrupt also reads the real
/// clock every 32 ticks.
static COARSE_NOW_US: AtomicU64 = AtomicU64::new(0);
static CLOCK_START: OnceLock<Instant> = OnceLock::new();

/// The origin of the coarse clock.
pub(crate) fn clock_start() -> Instant {
    *CLOCK_START.get_or_init(Instant::now)
}

/// The coarse clock: microseconds since [`clock_start`].
pub(crate) fn coarse_now_us() -> u64 {
    COARSE_NOW_US.load(Ordering::Relaxed)
}

fn advance_coarse_clock() {
    let now = u64::try_from(clock_start().elapsed().as_micros()).unwrap_or(u64::MAX);
    COARSE_NOW_US.fetch_max(now, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::swap_active;

    #[test]
    fn any_active_swap_turns_the_dirty_page_scan_off() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!swap_active(header));
        assert!(!swap_active(""));
        assert!(swap_active(&format!(
            "{header}/dev/zram0                              partition\t4194300\t\t0\t\t100\n"
        )));
        assert!(swap_active(&format!(
            "{header}/swapfile                               file\t\t1048572\t\t0\t\t-2\n"
        )));
    }
}

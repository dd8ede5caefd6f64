//! The resource limiter of one invocation: memory, tables and instance counts.

use wasmtime::ResourceLimiter;

use crate::error::Error;
use crate::limits::Limits;

/// A log message that makes the `log` host function panic, in the runtime's own
/// unit tests only: it proves a host panic fails one invocation and nothing else.
#[cfg(test)]
pub(crate) const TEST_PANIC_MARKER: &str = "__palisade_test_host_panic__";

/// Enforces [`Limits`] on memories, tables and instance counts, and records the
/// peak memory and the first limit refused, so that the trap that usually follows
/// (a guest aborting on a failed allocation) is reported as the limit it was.
pub(crate) struct Limiter {
    memory: u64,
    table_elements: u64,
    instances: usize,
    tables: usize,
    memories: usize,
    pub(crate) peak_memory: u64,
    pub(crate) hit: Option<Error>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        let (instances, tables, memories) = limits.count_limits();
        Limiter {
            memory: limits.memory_limit(),
            table_elements: limits.table_element_limit(),
            instances,
            tables,
            memories,
            peak_memory: 0,
            hit: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.memory {
            self.hit.get_or_insert(Error::MemoryLimit {
                requested: desired,
                limit: self.memory,
            });
            return Ok(false);
        }
        // A guest that asked for less after a refusal (the SDK's allocator does) and got
        // it was not stopped by the limit: a later failure is its own.
        if matches!(self.hit, Some(Error::MemoryLimit { .. })) {
            self.hit = None;
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.hit.get_or_insert(Error::ResourceLimit {
                what: format!("table elements ({desired} > {})", self.table_elements),
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growth_that_fits_after_a_refused_one_clears_the_hit() {
        let mut limiter = Limiter::new(&Limits::default().memory(1 << 20));
        assert!(!limiter.memory_growing(0, 2 << 20, None).unwrap());
        assert!(matches!(limiter.hit, Some(Error::MemoryLimit { .. })));
        // The SDK's allocator asks for less and gets it: a later trap is its own.
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap());
        assert!(limiter.hit.is_none());
        assert_eq!(limiter.peak_memory, 512 << 10);
    }
}

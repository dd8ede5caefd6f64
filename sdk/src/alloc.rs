//! The guest's allocator: a static arena first, then whole pages from `memory.grow`.
//!
//! Every invocation runs in a fresh instance, so its first allocation is also the
//! instance's first. Rust's default wasm allocator (dlmalloc) takes every byte of its
//! heap from `memory.grow`, so each invocation grew the memory at least once, and the
//! host paid for it twice: an `mprotect` to make the pages accessible and another to
//! take them back when the pooled slot was reused. Here the first 512 KiB of heap are a
//! zeroed static (part of the module's initial memory, copy-on-write, untouched pages
//! cost nothing), so a typical invocation never grows its memory; larger ones claim more
//! pages as dlmalloc would. [Talc](https://docs.rs/talc) manages the heaps.
//!
//! The arena counts against the policy's memory limit like any initial memory: the
//! smallest limit a policy built with this SDK can run under is its stack (256 KiB),
//! its data and this arena. A policy that brings its own `#[global_allocator]` turns
//! the SDK's default features off.

use core::alloc::Layout;
use core::mem::MaybeUninit;

use talc::base::Talc;
use talc::base::binning::Binning;
use talc::cell::TalcSyncCell;
use talc::source::Source;
use talc::wasm::WasmBinning;

/// Bytes of heap available without growing the memory.
const ARENA_BYTES: usize = 512 << 10;
const PAGE: usize = 64 << 10;
/// Memory grows by at least this many pages at once: fewer growths, fewer `mprotect`s.
const MIN_GROWTH_PAGES: usize = 16;

static mut ARENA: [MaybeUninit<u8>; ARENA_BYTES] = [MaybeUninit::uninit(); ARENA_BYTES];

#[global_allocator]
static ALLOCATOR: TalcSyncCell<ArenaThenPages, WasmBinning> =
    TalcSyncCell::new_wasm(ArenaThenPages {
        arena_claimed: false,
    });

/// Where the heap comes from: [`ARENA`] once, then pages from `memory.grow`.
#[derive(Debug)]
struct ArenaThenPages {
    arena_claimed: bool,
}

// SAFETY: `acquire` allocates nothing, and hands Talc only memory nothing else uses:
// the static arena (once), and pages `memory.grow` just added.
unsafe impl Source for ArenaThenPages {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        if !talc.source.arena_claimed {
            talc.source.arena_claimed = true;
            // SAFETY: the arena is only ever touched by this allocator.
            if unsafe { talc.claim((&raw mut ARENA).cast(), ARENA_BYTES) }.is_some() {
                return Ok(());
            }
        }
        // Room for the allocation, its alignment and Talc's bookkeeping.
        let needed = layout.size() + layout.align() + 256;
        let needed_pages = needed.div_ceil(PAGE);
        let pages = needed_pages.max(MIN_GROWTH_PAGES);
        let old = match core::arch::wasm32::memory_grow(0, pages) {
            usize::MAX => match core::arch::wasm32::memory_grow(0, needed_pages) {
                usize::MAX => return Err(()),
                old => return claim_pages(talc, old, needed_pages),
            },
            old => old,
        };
        claim_pages(talc, old, pages)
    }
}

fn claim_pages<S: Source, B: Binning>(
    talc: &mut Talc<S, B>,
    first: usize,
    pages: usize,
) -> Result<(), ()> {
    let base = (first * PAGE) as *mut u8;
    // SAFETY: the pages were just added to the memory; nothing else knows of them.
    match unsafe { talc.claim(base, pages * PAGE) } {
        Some(_) => Ok(()),
        None => Err(()),
    }
}

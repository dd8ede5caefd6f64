//! The deny-all WASI 0.2 context for guests built for WASI.
//!
//! `wasmtime-wasi` links every WASI 0.2 interface; this module then replaces the few
//! functions that could block or do unbounded work on the guest's behalf (catalogue
//! item 50), so that no WASI call can hold a thread past the invocation's deadline:
//!
//! - Time is frozen at zero. `monotonic-clock.subscribe-duration` and
//!   `subscribe-instant` give a pollable that is ready at once for a zero wait and never
//!   otherwise (a real timer would be an ambient clock: a guest could count its own
//!   work against it).
//! - `poll` and `pollable.block` never wait: they return what is ready now. Nothing
//!   in this context becomes ready later (no network, no files, stdin closed, stdout
//!   always writable, time frozen), so a call that finds nothing ready would wait
//!   forever; it ends the invocation at once with [`Error::Deadline`], the outcome
//!   waiting would have had, without holding the thread until then.
//! - `get-random-bytes` and `get-insecure-random-bytes` are capped at
//!   [`MAX_RANDOM_BYTES`] per call and cost fuel like the Palisade host calls.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::{StoreState, charge};
use crate::error::Error;
use crate::message::LogLevel;

/// The most bytes one `wasi:random` `get-random-bytes` or `get-insecure-random-bytes`
/// call may ask for: 64 KiB. Larger requests fail the invocation with
/// [`Error::ResourceLimit`].
pub(crate) const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// The byte `wasi:random/random` repeats (a fixed sequence: no entropy reaches a guest).
const SECURE_RANDOM_BYTE: u8 = 0x5a;
/// The byte `wasi:random/insecure` repeats.
const INSECURE_RANDOM_BYTE: u8 = 0xa5;

/// The WASI interfaces whose functions are replaced, at the version `wasmtime-wasi`
/// defines (guests importing any 0.2.x version are matched to it).
const POLL: &str = "wasi:io/poll@0.2.12";
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
const RANDOM: &str = "wasi:random/random@0.2.12";
const INSECURE_RANDOM: &str = "wasi:random/insecure@0.2.12";

/// WASI state of one invocation: nothing granted.
///
/// No preopened directories, environment variables, arguments, stdin or network
/// (TCP, UDP and name lookup are off and every address is refused). The clocks are
/// frozen at zero and the random sources are a fixed sequence, so a guest gets no
/// ambient time or entropy. Stdout and stderr are bounded buffers drained into the
/// invocation log.
pub(crate) struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiState {
    pub(crate) fn new(output_cap: usize) -> Self {
        let stdout = MemoryOutputPipe::new(output_cap);
        let stderr = MemoryOutputPipe::new(output_cap);
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Deterministic::new(vec![SECURE_RANDOM_BYTE]))
            .insecure_random(Deterministic::new(vec![INSECURE_RANDOM_BYTE]))
            .insecure_random_seed(0)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        WasiState {
            ctx,
            table: ResourceTable::new(),
            stdout,
            stderr,
        }
    }

    /// What the guest wrote to stdout (logged at info) and stderr (logged at warn).
    pub(crate) fn take_output(&self) -> Vec<(LogLevel, String)> {
        [
            (LogLevel::Info, &self.stdout),
            (LogLevel::Warn, &self.stderr),
        ]
        .into_iter()
        .map(|(level, pipe)| {
            (
                level,
                String::from_utf8_lossy(&pipe.contents()).into_owned(),
            )
        })
        .filter(|(_, text)| !text.is_empty())
        .collect()
    }
}

/// A clock that always reads zero.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A monotonic-clock subscription on frozen time: due at once or never.
struct FrozenTimer {
    due: bool,
}

#[wasmtime_wasi::async_trait]
impl Pollable for FrozenTimer {
    async fn ready(&mut self) {
        if !self.due {
            std::future::pending::<()>().await;
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = wasi_state(self);
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

fn wasi_state(state: &mut StoreState) -> &mut WasiState {
    // Only components that import WASI are linked with the WASI linker, and their
    // stores are always created with a `WasiState`.
    state
        .wasi
        .as_mut()
        .expect("WASI linker used with a store that has no WASI state")
}

/// Adds the deny-all WASI 0.2 implementation to `linker`, with the blocking, clock and
/// random functions replaced (see the module docs).
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);

    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, StoreState>, (wait,): (u64,)| {
            charge(&mut store, 0)?;
            Ok((frozen_timer(store.data_mut(), wait == 0)?,))
        },
    )?;
    // The frozen clock reads zero, so only an instant of zero is due.
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, StoreState>, (when,): (u64,)| {
            charge(&mut store, 0)?;
            Ok((frozen_timer(store.data_mut(), when == 0)?,))
        },
    )?;

    let mut poll = linker.instance(POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, StoreState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            charge(&mut store, pollables.len() * 4)?;
            let table = &mut wasi_state(store.data_mut()).table;
            match now_or_never(table.poll(pollables)) {
                Some(ready) => Ok((ready?,)),
                None => Err(waits_forever(store.data_mut())),
            }
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, StoreState>, (pollable,): (Resource<DynPollable>,)| {
            charge(&mut store, 0)?;
            let table = &mut wasi_state(store.data_mut()).table;
            match now_or_never(table.block(pollable)) {
                Some(done) => done,
                None => Err(waits_forever(store.data_mut())),
            }
        },
    )?;

    linker.instance(RANDOM)?.func_wrap(
        "get-random-bytes",
        |mut store: StoreContextMut<'_, StoreState>, (len,): (u64,)| {
            random_bytes(&mut store, len, SECURE_RANDOM_BYTE)
        },
    )?;
    linker.instance(INSECURE_RANDOM)?.func_wrap(
        "get-insecure-random-bytes",
        |mut store: StoreContextMut<'_, StoreState>, (len,): (u64,)| {
            random_bytes(&mut store, len, INSECURE_RANDOM_BYTE)
        },
    )?;

    linker.allow_shadowing(false);
    Ok(())
}

fn frozen_timer(state: &mut StoreState, due: bool) -> wasmtime::Result<Resource<DynPollable>> {
    let table = &mut wasi_state(state).table;
    let timer = table.push(FrozenTimer { due })?;
    subscribe(table, timer)
}

/// Polls `future` once. Every pollable of the deny-all context is either ready at once
/// or never, so one poll with a waker that does nothing is the whole answer.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Ends the invocation of a guest that waits for something that can never happen.
fn waits_forever(state: &mut StoreState) -> wasmtime::Error {
    state.host_error = Some(Error::Deadline(state.timeout));
    wasmtime::Error::msg("the guest waits on frozen time: ended at once as its deadline")
}

fn random_bytes(
    store: &mut StoreContextMut<'_, StoreState>,
    len: u64,
    byte: u8,
) -> wasmtime::Result<(Vec<u8>,)> {
    if len > MAX_RANDOM_BYTES {
        store.data_mut().host_error = Some(Error::ResourceLimit {
            what: format!("wasi:random request of {len} bytes (limit {MAX_RANDOM_BYTES})"),
        });
        return Err(wasmtime::Error::msg("random request over the cap"));
    }
    let len = len as usize;
    charge(store, len)?;
    Ok((vec![byte; len],))
}

//! The deny-all WASI 0.2 context for guests built for WASI.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::StoreState;
use crate::message::LogLevel;

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
            .secure_random(Deterministic::new(vec![0x5a]))
            .insecure_random(Deterministic::new(vec![0xa5]))
            .insecure_random_seed(0)
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

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Only components that import WASI are linked with the WASI linker, and their
        // stores are always created with a `WasiState`.
        let wasi = self
            .wasi
            .as_mut()
            .expect("WASI linker used with a store that has no WASI state");
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

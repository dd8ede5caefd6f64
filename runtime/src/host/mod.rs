//! Per-invocation host state and the host functions a policy may import.
//!
//! Every host function charges fuel and counts against the host-call bound, so a guest
//! that loops over a cheap import is still stopped (catalogue item 2).

mod limiter;
mod wasi;

use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{Linker, LinkerInstance};
use wasmtime::{StoreContextMut, Trap};

use crate::bindings::palisade::policy::types::LogLevel as WitLogLevel;
use crate::error::Error;
use crate::limits::Limits;
use crate::message::{LogLevel, LogLine, Sealer};
use crate::report::Redactions;

pub(crate) use self::limiter::Limiter;
#[cfg(test)]
pub(crate) use self::limiter::TEST_PANIC_MARKER;
pub(crate) use self::wasi::WasiState;

/// The name under which the host interface is imported, at the version this host implements.
pub(crate) const HOST_INTERFACE: &str = "palisade:policy/host@0.1.0";

/// Fuel charged for every host call, plus one unit per 64 bytes moved.
const HOST_CALL_FUEL: u64 = 500;

/// What `seal` answers a policy the route did not grant field encryption.
pub(crate) const NOT_GRANTED: &str =
    "field encryption is not granted to this policy (`field_encryption` on its route entry)";

/// The longest value (JSON text) `seal` takes: 1 MiB. The host parses and encrypts it in
/// its own memory, which no guest limit counts.
pub const MAX_SEAL_VALUE: usize = 1 << 20;

/// Fuel for one `seal` beyond the host call's: key derivation and AES, plus one unit per
/// byte sealed.
const SEAL_FUEL: u64 = 20_000;

/// The checks every `seal` passes before the sealer sees it, Wasm and Lua alike: the
/// grant, the value's size and the path's place in the invocation's audit report.
/// Reports the path when it sealed.
pub(crate) fn seal(
    sealer: Option<&Sealer>,
    redacted: &mut Redactions,
    path: &str,
    value: &str,
    deterministic: bool,
) -> Result<String, String> {
    let Some(sealer) = sealer else {
        return Err(NOT_GRANTED.to_string());
    };
    if value.len() > MAX_SEAL_VALUE {
        return Err(format!(
            "the value is {} bytes of JSON text; at most {MAX_SEAL_VALUE} are sealed",
            value.len()
        ));
    }
    // A token whose path the audit would not record is not made.
    if !redacted.accepts(path) {
        return Err(
            "the path cannot be reported as redacted (not a JSONPath, or past the invocation's report caps)"
                .to_string(),
        );
    }
    let token = sealer.seal(path, value, deterministic)?;
    redacted.report(path);
    Ok(token)
}

/// Bytes each log line counts against the log cap beyond its text.
const LOG_LINE_OVERHEAD: usize = 32;

/// The data of one invocation's `Store`. Dropped with the store when the invocation ends.
pub(crate) struct StoreState {
    pub(crate) limiter: Limiter,
    pub(crate) body: Bytes,
    pub(crate) config: Vec<(String, String)>,
    pub(crate) logs: LogBuffer,
    pub(crate) redacted: Redactions,
    /// Field encryption, when the route grants it to this policy.
    pub(crate) sealer: Option<Sealer>,
    /// The invocation's deadline, for the error of a WASI wait that cannot end.
    timeout: Duration,
    host_calls: u64,
    max_host_calls: u64,
    fuel: bool,
    /// Set when a host function refused the guest; the trap it causes is reported as this.
    pub(crate) host_error: Option<Error>,
    pub(crate) wasi: Option<WasiState>,
}

impl StoreState {
    pub(crate) fn new(
        limits: &Limits,
        body: Bytes,
        config: Vec<(String, String)>,
        wasi: bool,
        metered: bool,
    ) -> Self {
        let logs = LogBuffer::new(limits.log_limit());
        StoreState {
            limiter: Limiter::new(limits),
            body,
            config,
            wasi: wasi.then(|| WasiState::new(limits.log_limit())),
            logs,
            redacted: Redactions::default(),
            sealer: None,
            timeout: limits.deadline(),
            host_calls: 0,
            max_host_calls: limits.host_call_limit(),
            fuel: metered && limits.fuel_budget().is_some(),
            host_error: None,
        }
    }

    /// Clears per-call counters and reports, for a store that is called again
    /// (benchmark baselines only; Palisade itself never reuses a store).
    #[cfg(feature = "bench")]
    pub(crate) fn reset_for_next_call(&mut self) {
        self.host_calls = 0;
        self.logs = LogBuffer::new(self.logs.limit);
        self.redacted = Redactions::default();
    }

    /// Moves what the guest wrote to WASI stdout/stderr into the log.
    pub(crate) fn drain_wasi_output(&mut self) {
        if let Some(wasi) = &self.wasi {
            for (level, text) in wasi.take_output() {
                for line in text.lines().filter(|l| !l.is_empty()) {
                    self.logs.push(level, line.to_string());
                }
            }
        }
    }
}

/// The bounded log of one invocation.
pub(crate) struct LogBuffer {
    pub(crate) lines: Vec<LogLine>,
    bytes: usize,
    limit: usize,
    pub(crate) dropped: u64,
}

impl LogBuffer {
    pub(crate) fn new(limit: usize) -> Self {
        LogBuffer {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, level: LogLevel, message: String) {
        // Each line costs its text plus a fixed overhead, so empty lines are bounded too.
        let cost = message.len() + LOG_LINE_OVERHEAD;
        if self.bytes + cost > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += cost;
        self.lines.push(LogLine { level, message });
    }

    /// The last error-level line: the SDK logs a panic's message there before it traps.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.level == LogLevel::Error)
            .map(|l| crate::message::one_line(&l.message, 1_024))
    }
}

/// Charges a host call: one call against the bound and fuel for the bytes it moves.
fn charge(store: &mut StoreContextMut<'_, StoreState>, bytes: usize) -> wasmtime::Result<()> {
    let state = store.data_mut();
    state.host_calls += 1;
    if state.host_calls > state.max_host_calls {
        state.host_error = Some(Error::HostCallLimit {
            limit: state.max_host_calls,
        });
        return Err(wasmtime::Error::msg("host call limit exceeded"));
    }
    burn(store, HOST_CALL_FUEL + (bytes as u64) / 64)
}

/// Takes `units` of fuel (when metered): a trap when fewer are left.
fn burn(store: &mut StoreContextMut<'_, StoreState>, units: u64) -> wasmtime::Result<()> {
    if store.data().fuel {
        let left = store.get_fuel()?;
        if left < units {
            store.set_fuel(0)?;
            return Err(Trap::OutOfFuel.into());
        }
        store.set_fuel(left - units)?;
    }
    Ok(())
}

/// Defines the `palisade:policy/host` interface in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    let mut host: LinkerInstance<'_, StoreState> = linker.instance(HOST_INTERFACE)?;
    host.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, StoreState>, (level, message): (WitLogLevel, String)| {
            charge(&mut store, message.len())?;
            #[cfg(test)]
            if message == limiter::TEST_PANIC_MARKER {
                panic!("host function panic requested by a test");
            }
            store.data_mut().logs.push(level.into(), message);
            Ok(())
        },
    )?;
    host.func_wrap(
        "redacted",
        |mut store: StoreContextMut<'_, StoreState>, (path,): (String,)| {
            charge(&mut store, path.len())?;
            store.data_mut().redacted.report(&path);
            Ok(())
        },
    )?;
    host.func_wrap(
        "config",
        |mut store: StoreContextMut<'_, StoreState>, (key,): (String,)| {
            charge(&mut store, key.len())?;
            let value = store
                .data()
                .config
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone());
            Ok((value,))
        },
    )?;
    host.func_wrap(
        "body",
        |mut store: StoreContextMut<'_, StoreState>, (): ()| {
            let body = store.data().body.clone();
            charge(&mut store, body.len())?;
            Ok((body.to_vec(),))
        },
    )?;
    host.func_wrap(
        "seal",
        |mut store: StoreContextMut<'_, StoreState>,
         (path, value, deterministic): (String, String, bool)| {
            charge(&mut store, path.len() + value.len())?;
            burn(&mut store, SEAL_FUEL + value.len() as u64)?;
            let state = store.data_mut();
            let sealed = seal(
                state.sealer.as_ref(),
                &mut state.redacted,
                &path,
                &value,
                deterministic,
            );
            // The token it hands back is moved too (one call: not counted again).
            if let Ok(token) = &sealed {
                burn(&mut store, token.len() as u64 / 64)?;
            }
            Ok((sealed,))
        },
    )?;
    host.func_wrap(
        "body-size",
        |mut store: StoreContextMut<'_, StoreState>, (): ()| {
            charge(&mut store, 0)?;
            Ok((store.data().body.len() as u64,))
        },
    )?;
    Ok(())
}

/// Adds the deny-all WASI 0.2 implementation to `linker` (see [`wasi`]).
pub(crate) fn add_wasi_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker)
}

impl From<WitLogLevel> for LogLevel {
    fn from(level: WitLogLevel) -> Self {
        match level {
            WitLogLevel::Trace => LogLevel::Trace,
            WitLogLevel::Debug => LogLevel::Debug,
            WitLogLevel::Info => LogLevel::Info,
            WitLogLevel::Warn => LogLevel::Warn,
            WitLogLevel::Error => LogLevel::Error,
        }
    }
}

//! What an upload must pass before it is stored: name and version syntax, its kind, a
//! time-bounded compile off the request path, and a smoke invocation of each phase.

use std::time::Duration;

use palisade_runtime::{Context, Engine, Kind, Limits, Policy, Request, Response};

use super::RegistryError;

/// Whether `s` is 1-64 of `[A-Za-z0-9_.-]` (module names) or also `+` (versions).
pub(super) fn valid(s: &str, plus: bool) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') || (plus && b == b'+')
        })
}

/// What the bytes are: a Wasm module or component starts with `\0asm`; anything else is
/// taken as a Luau script (and compiled as one, or refused).
pub(super) fn kind_of(bytes: &[u8]) -> Kind {
    if bytes.starts_with(b"\0asm") {
        Kind::Wasm
    } else {
        Kind::Lua
    }
}

/// Compiles `bytes` on a thread of its own; refused (`compile_bound`) when it takes
/// longer than `timeout`, or with the runtime's cause when it is not a valid module.
pub(super) fn compile(
    engine: &Engine,
    timeout: Duration,
    name: &str,
    kind: Kind,
    bytes: &[u8],
) -> Result<Policy, RegistryError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (engine, name, bytes) = (engine.clone(), name.to_string(), bytes.to_vec());
    std::thread::spawn(move || {
        let _ = tx.send(Policy::from_bytes(&engine, &name, kind, &bytes));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(RegistryError::Rejected {
            cause: e.kind(),
            detail: e.to_string(),
        }),
        Err(_) => Err(RegistryError::Rejected {
            cause: "compile_bound",
            detail: format!("compilation took longer than {timeout:?}"),
        }),
    }
}

/// Runs each exported phase once on an empty input under tight limits. Traps and limits
/// reject the module; the guest's own error or denial does not.
pub(super) fn smoke(module: &Policy) -> Result<(), RegistryError> {
    let limits = Limits::default()
        .fuel(100_000_000)
        .memory(64 << 20)
        .timeout(Duration::from_millis(500));
    let module = module.with_limits(limits);
    let ctx = Context {
        tenant: "smoke".into(),
        route: "smoke".into(),
        correlation_id: "smoke".into(),
        ..Context::default()
    };
    let request = Request {
        method: "GET".into(),
        path: "/".into(),
        ..Request::default()
    };
    let phases = module.phases();
    let mut results = Vec::new();
    if phases.request {
        results.push(module.on_request(&ctx, request.clone()).result.map(drop));
    }
    if phases.response {
        let res = Response {
            status: 200,
            ..Response::default()
        };
        results.push(module.on_response(&ctx, &request, res).result.map(drop));
    }
    for r in results {
        if let Err(e) = r {
            if matches!(e.kind(), "guest_error" | "script_error") {
                continue;
            }
            return Err(RegistryError::Rejected {
                cause: e.kind(),
                detail: format!("smoke invocation with an empty input: {e}"),
            });
        }
    }
    Ok(())
}

//! One invocation: a fresh `Store` with its limits, a fresh instance, one call, and
//! the typed outcome. Nothing survives the invocation.
//!
//! This module runs a [`Linked`] component and knows nothing of how it was loaded
//! ([`crate::wasm`] loads, then calls in here).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::palisade::policy::types as wit;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::host::StoreState;
use crate::limits::Limits;
use crate::message::{
    self, Context, Decision, Invocation, Pending, Request, Response, Stats, check_head,
    check_headers, check_output, check_status, skipped,
};

type RequestFn = (Result<wit::RequestAction, String>,);
type ResponseFn = (Result<wit::ResponseAction, String>,);
type ResponseArgs<'a> = (
    &'a wit::Context,
    &'a wit::RequestHead,
    &'a wit::ResponseHead,
);

/// Guest error messages are cut to this many bytes.
const MAX_GUEST_MESSAGE: usize = 1_024;

/// How Wasmtime reports that lifting used up the store's hostcall fuel.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// The most bytes Wasmtime may lift out of the guest in one call or answer (its
/// "hostcall fuel", 128 MiB unless set): the output cap plus what the largest
/// allowed header list costs as Rust values, so that an answer within the caps always
/// lifts and anything larger is refused before the host allocates it.
fn lift_budget(limits: &Limits) -> usize {
    let per_header = std::mem::size_of::<(String, String)>() as u64;
    let budget = limits
        .output_limit()
        .saturating_add((limits.header_limit() as u64).saturating_mul(per_header));
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// A component compiled and linked against the host, with its phase exports.
pub(crate) struct Linked {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) request: Option<ComponentExportIndex>,
    pub(crate) response: Option<ComponentExportIndex>,
    pub(crate) uses_wasi: bool,
}

impl Linked {
    /// Runs the request phase on `req`.
    ///
    /// A policy that does not implement the request phase continues with `req` unchanged
    /// and costs nothing. The invocation never panics and never shares state with another:
    /// every failure is an [`Error`] in [`Invocation::result`].
    pub(crate) fn on_request(
        &self,
        limits: &Limits,
        ctx: &Context,
        req: Request,
    ) -> Invocation<Request> {
        let Some(export) = self.request else {
            return skipped(req);
        };
        let args = (wit_context(ctx), wit_request_head(&req));
        let (result, inv) = self.run(limits, ctx, req.body.clone(), |store, instance| {
            let func = instance.get_typed_func::<(&wit::Context, &wit::RequestHead), RequestFn>(
                &mut *store,
                &export,
            )?;
            Ok(func.call(&mut *store, (&args.0, &args.1))?.0)
        });
        inv.finish(result.and_then(|answer| request_decision(answer, req, limits)))
    }

    /// [`Linked::on_request`] on the calling task: the guest runs on a fiber and yields to
    /// the executor at every epoch tick, so no thread hop and no other request stalls
    /// for longer than a tick while it runs.
    pub(crate) async fn on_request_async(
        &self,
        limits: &Limits,
        ctx: &Context,
        req: Request,
    ) -> Invocation<Request> {
        let Some(export) = self.request else {
            return skipped(req);
        };
        let args = (wit_context(ctx), wit_request_head(&req));
        let (result, inv) = self
            .run_async(limits, ctx, req.body.clone(), async |store, instance| {
                let func = instance
                    .get_typed_func::<(&wit::Context, &wit::RequestHead), RequestFn>(
                        &mut *store,
                        &export,
                    )?;
                Ok(func.call_async(&mut *store, (&args.0, &args.1)).await?.0)
            })
            .await;
        inv.finish(result.and_then(|answer| request_decision(answer, req, limits)))
    }

    /// Runs the response phase on `res`; `req` is the request as it was sent upstream
    /// (its body is not passed to the guest).
    ///
    /// A policy that does not implement the response phase continues with `res`
    /// unchanged and costs nothing.
    pub(crate) fn on_response(
        &self,
        limits: &Limits,
        ctx: &Context,
        req: &Request,
        res: Response,
    ) -> Invocation<Response> {
        let Some(export) = self.response else {
            return skipped(res);
        };
        let args = response_args(ctx, req, &res);
        let (result, inv) = self.run(limits, ctx, res.body.clone(), |store, instance| {
            let func =
                instance.get_typed_func::<ResponseArgs<'_>, ResponseFn>(&mut *store, &export)?;
            Ok(func.call(&mut *store, (&args.0, &args.1, &args.2))?.0)
        });
        inv.finish(result.and_then(|answer| response_decision(answer, res, limits)))
    }

    /// [`Linked::on_response`] on the calling task (see [`Linked::on_request_async`]).
    pub(crate) async fn on_response_async(
        &self,
        limits: &Limits,
        ctx: &Context,
        req: &Request,
        res: Response,
    ) -> Invocation<Response> {
        let Some(export) = self.response else {
            return skipped(res);
        };
        let args = response_args(ctx, req, &res);
        let (result, inv) = self
            .run_async(limits, ctx, res.body.clone(), async |store, instance| {
                let func = instance
                    .get_typed_func::<ResponseArgs<'_>, ResponseFn>(&mut *store, &export)?;
                Ok(func
                    .call_async(&mut *store, (&args.0, &args.1, &args.2))
                    .await?
                    .0)
            })
            .await;
        inv.finish(result.and_then(|answer| response_decision(answer, res, limits)))
    }

    /// Creates a store with this policy's limits, instantiates, calls, and classifies
    /// any failure. A panic in a host function is caught here: the store is dropped
    /// with the invocation and the error is [`Error::HostPanic`].
    fn run<R>(
        &self,
        limits: &Limits,
        ctx: &Context,
        body: Bytes,
        call: impl FnOnce(&mut Store<StoreState>, &Instance) -> wasmtime::Result<R>,
    ) -> (Result<R>, Pending) {
        let start = Instant::now();
        let mut store = new_store(self, limits, body, ctx.config.clone());
        store.data_mut().sealer = ctx.sealer.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let instance = self
                .pre
                .instantiate(&mut store)
                .map_err(|e| (Stage::Instantiate, e))?;
            call(&mut store, &instance).map_err(|e| (Stage::Call, e))
        }));
        self.report(store, limits, outcome, start)
    }

    /// [`Linked::run`] on a fiber: the deadline is checked at every epoch tick, where the
    /// guest yields to the executor until its time is up.
    async fn run_async<R>(
        &self,
        limits: &Limits,
        ctx: &Context,
        body: Bytes,
        call: impl AsyncFnOnce(&mut Store<StoreState>, &Instance) -> wasmtime::Result<R>,
    ) -> (Result<R>, Pending) {
        let start = Instant::now();
        let mut store = new_store(self, limits, body, ctx.config.clone());
        store.data_mut().sealer = ctx.sealer.clone();
        if self.engine.inner.config.epoch_interruption {
            let deadline = start + limits.deadline();
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                Ok(if Instant::now() >= deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Yield(1)
                })
            });
        }
        let outcome = AssertUnwindSafe(async {
            let instance = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (Stage::Instantiate, e))?;
            call(&mut store, &instance)
                .await
                .map_err(|e| (Stage::Call, e))
        })
        .catch_unwind()
        .await;
        self.report(store, limits, outcome, start)
    }

    /// The outcome of a run, classified, and what the store observed.
    fn report<R>(
        &self,
        mut store: Store<StoreState>,
        limits: &Limits,
        outcome: std::thread::Result<std::result::Result<R, (Stage, wasmtime::Error)>>,
        start: Instant,
    ) -> (Result<R>, Pending) {
        let fuel_left = store.get_fuel().unwrap_or(u64::MAX);
        let state = store.data_mut();
        state.drain_wasi_output();
        let result = match outcome {
            Ok(Ok(r)) => Ok(r),
            Ok(Err((stage, e))) => Err(classify(e, state, limits, stage)),
            Err(_) => Err(Error::HostPanic),
        };
        // A limit the call ran into and came back from (`classify` took it otherwise).
        let survived = state.limiter.hit.take();
        let pending = Pending {
            logs: std::mem::take(&mut state.logs.lines),
            logs_dropped: state.logs.dropped,
            redacted: std::mem::take(&mut state.redacted),
            metered: self.engine.inner.config.consume_fuel,
            survived,
            stats: Stats {
                // Unlimited fuel starts at `u64::MAX`, so consumption is measured either way.
                fuel: if self.engine.inner.config.consume_fuel {
                    limits
                        .fuel_budget()
                        .unwrap_or(u64::MAX)
                        .saturating_sub(fuel_left)
                } else {
                    0
                },
                memory_peak: state.limiter.peak_memory,
                duration: start.elapsed(),
            },
        };
        (result, pending)
    }
}

/// The checks and the decision of a request phase's answer.
fn request_decision(
    answer: std::result::Result<wit::RequestAction, String>,
    req: Request,
    limits: &Limits,
) -> Result<Decision<Request>> {
    match answer {
        Err(msg) => Err(guest_error(msg)),
        Ok(wit::RequestAction::Respond(reply)) => {
            reply_to_response(reply, limits).map(Decision::Respond)
        }
        Ok(wit::RequestAction::Continue(change)) => {
            let start = (change.head.method.len()
                + change.head.path.len()
                + change.head.query.len()) as u64;
            check_head(start, &change.head.headers, limits)?;
            let size = start
                + message::headers_size(&change.head.headers)
                + change.body.as_ref().map_or(0, |b| b.len() as u64);
            check_output(size, limits.output_limit())?;
            check_headers(&change.head.headers)?;
            Ok(Decision::Continue(Request {
                method: change.head.method,
                path: change.head.path,
                query: change.head.query,
                headers: change.head.headers,
                body: change.body.map(Bytes::from).unwrap_or(req.body),
            }))
        }
    }
}

/// The checks and the decision of a response phase's answer.
fn response_decision(
    answer: std::result::Result<wit::ResponseAction, String>,
    res: Response,
    limits: &Limits,
) -> Result<Decision<Response>> {
    match answer {
        Err(msg) => Err(guest_error(msg)),
        Ok(wit::ResponseAction::Respond(reply)) => {
            reply_to_response(reply, limits).map(Decision::Respond)
        }
        Ok(wit::ResponseAction::Continue(change)) => {
            check_head(0, &change.head.headers, limits)?;
            let size = message::headers_size(&change.head.headers)
                + change.body.as_ref().map_or(0, |b| b.len() as u64);
            check_output(size, limits.output_limit())?;
            check_status(change.head.status)?;
            check_headers(&change.head.headers)?;
            Ok(Decision::Continue(Response {
                status: change.head.status,
                headers: change.head.headers,
                body: change.body.map(Bytes::from).unwrap_or(res.body),
            }))
        }
    }
}

/// The response phase's arguments: the context, the request's head, the response's head.
fn response_args(
    ctx: &Context,
    req: &Request,
    res: &Response,
) -> (wit::Context, wit::RequestHead, wit::ResponseHead) {
    (
        wit_context(ctx),
        wit_request_head(req),
        wit::ResponseHead {
            status: res.status,
            headers: res.headers.clone(),
        },
    )
}

/// A fresh store for one invocation, with every limit armed.
fn new_store(
    linked: &Linked,
    limits: &Limits,
    body: Bytes,
    config: Vec<(String, String)>,
) -> Store<StoreState> {
    let engine = &linked.engine.inner;
    let state = StoreState::new(
        limits,
        body,
        config,
        linked.uses_wasi,
        engine.config.consume_fuel,
    );
    let mut store = Store::new(&engine.wasmtime, state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(lift_budget(limits));
    arm(&mut store, engine, limits);
    store
}

/// Sets the fuel budget and the deadline of a store.
fn arm(store: &mut Store<StoreState>, engine: &crate::engine::EngineInner, limits: &Limits) {
    if engine.config.consume_fuel {
        // "Unlimited" is the largest budget.
        store
            .set_fuel(limits.fuel_budget().unwrap_or(u64::MAX))
            .expect("fuel metering is on for this engine");
    }
    if engine.config.epoch_interruption {
        let tick = engine.config.epoch_tick.as_nanos().max(1);
        let ticks = limits.deadline().as_nanos().div_ceil(tick) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
    }
}

/// Instantiates once and looks up every exported phase with the contract's signature,
/// so that a module with the right names but wrong types is refused at load.
pub(crate) fn check_signatures(linked: &Linked, limits: &Limits) -> Result<()> {
    let mut store = new_store(linked, limits, Bytes::new(), Vec::new());
    let instance = linked
        .pre
        .instantiate(&mut store)
        .map_err(|e| classify(e, store.data_mut(), limits, Stage::Instantiate))?;
    let check =
        |store: &mut Store<StoreState>,
         export: &Option<ComponentExportIndex>,
         which: &str,
         typed: fn(&Instance, &mut Store<StoreState>, &ComponentExportIndex) -> bool| {
            match export {
                Some(idx) if !typed(&instance, store, idx) => Err(Error::ContractVersion {
                    found: format!("{which} with a different signature"),
                    supported: crate::validate::CONTRACT_VERSION.to_string(),
                }),
                _ => Ok(()),
            }
        };
    check(&mut store, &linked.request, "on-request", |i, s, idx| {
        i.get_typed_func::<(&wit::Context, &wit::RequestHead), RequestFn>(s, idx)
            .is_ok()
    })?;
    check(&mut store, &linked.response, "on-response", |i, s, idx| {
        i.get_typed_func::<(&wit::Context, &wit::RequestHead, &wit::ResponseHead), ResponseFn>(
            s, idx,
        )
        .is_ok()
    })?;
    Ok(())
}

/// Where an invocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Creating the instance: memories, tables, instance counts.
    Instantiate,
    /// Calling the export and lifting its answer.
    Call,
}

/// Turns a Wasmtime error into the runtime's typed error.
fn classify(err: wasmtime::Error, state: &mut StoreState, limits: &Limits, stage: Stage) -> Error {
    if let Some(e) = state.host_error.take() {
        return e;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Error::FuelExhausted {
            limit: limits.fuel_budget().unwrap_or(u64::MAX),
        },
        Some(Trap::Interrupt) => Error::Deadline(limits.deadline()),
        Some(Trap::StackOverflow) => Error::StackOverflow,
        Some(trap) => state.limiter.hit.take().unwrap_or_else(|| Error::Trap {
            trap: trap.to_string(),
            guest_message: state.logs.last_error(),
        }),
        None => {
            if let Some(hit) = state.limiter.hit.take() {
                return hit;
            }
            // The root cause, without Wasmtime's backtrace context.
            let text = err.root_cause().to_string();
            if text.contains(HOSTCALL_FUEL_EXHAUSTED) {
                // More than the output cap crossed from the guest in one call or answer.
                let limit = limits.output_limit();
                return Error::OutputTooLarge {
                    size: limit.saturating_add(1),
                    limit,
                };
            }
            if stage == Stage::Instantiate {
                // The allocator refused a memory, table or instance the limiter did
                // not see (for example a table larger than the pool's slots).
                Error::ResourceLimit {
                    what: message::one_line(&text, MAX_GUEST_MESSAGE),
                }
            } else {
                // Lifting the guest's answer failed: an out-of-bounds pointer or
                // length, invalid UTF-8, an invalid discriminant.
                Error::InvalidOutput(message::one_line(&text, MAX_GUEST_MESSAGE))
            }
        }
    }
}

fn guest_error(msg: String) -> Error {
    Error::Guest(message::one_line(&msg, MAX_GUEST_MESSAGE))
}

fn reply_to_response(reply: wit::Reply, limits: &Limits) -> Result<Response> {
    check_head(0, &reply.headers, limits)?;
    check_output(
        message::headers_size(&reply.headers) + reply.body.len() as u64,
        limits.output_limit(),
    )?;
    check_status(reply.status)?;
    check_headers(&reply.headers)?;
    Ok(Response {
        status: reply.status,
        headers: reply.headers,
        body: Bytes::from(reply.body),
    })
}

fn wit_request_head(req: &Request) -> wit::RequestHead {
    wit::RequestHead {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
    }
}

fn wit_context(ctx: &Context) -> wit::Context {
    wit::Context {
        tenant: ctx.tenant.clone(),
        route: ctx.route.clone(),
        correlation_id: ctx.correlation_id.clone(),
        identity: ctx.identity.as_ref().map(|id| wit::Identity {
            subject: id.subject.clone(),
            scopes: id.scopes.clone(),
            claims: id
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        }),
        config: ctx.config.clone(),
    }
}

/// One instance called again and again on one store: the baseline that Palisade's
/// fresh-instance-per-invocation design is measured against. For benchmarks only
/// (feature `bench`); it keeps guest state between calls, which is exactly what
/// Palisade never does.
#[cfg(feature = "bench")]
pub struct ReusedInstance {
    store: Store<StoreState>,
    func: wasmtime::component::TypedFunc<(wit::Context, wit::RequestHead), RequestFn>,
    engine: Engine,
    limits: Limits,
}

#[cfg(feature = "bench")]
impl ReusedInstance {
    /// Instantiates `linked` once.
    ///
    /// # Panics
    ///
    /// If it has no request phase or cannot be instantiated.
    pub(crate) fn new(linked: &Linked, limits: &Limits) -> Self {
        let mut store = new_store(linked, limits, Bytes::new(), Vec::new());
        let instance = linked.pre.instantiate(&mut store).expect("instantiates");
        let export = linked.request.expect("a request phase");
        let func = instance
            .get_typed_func::<(wit::Context, wit::RequestHead), RequestFn>(&mut store, &export)
            .expect("typed");
        ReusedInstance {
            store,
            func,
            engine: linked.engine.clone(),
            limits: limits.clone(),
        }
    }

    /// Calls `on-request` on the same instance; returns whether it continued.
    pub fn on_request(&mut self, ctx: &Context, req: &Request) -> bool {
        arm(&mut self.store, &self.engine.inner, &self.limits);
        self.store.data_mut().reset_for_next_call();
        self.store.data_mut().body = req.body.clone();
        self.store.data_mut().config = ctx.config.clone();
        let (answer,) = self
            .func
            .call(&mut self.store, (wit_context(ctx), wit_request_head(req)))
            .expect("the call succeeds");
        matches!(answer, Ok(wit::RequestAction::Continue(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::TEST_PANIC_MARKER;
    use crate::{Config, WasmPolicy};

    /// A request-phase component that logs `message` at error level, then traps.
    fn logging_component(message: &str) -> Vec<u8> {
        let wat = format!(
            r#"(module
              (import "palisade:policy/host@0.1.0" "log" (func $log (param i32 i32 i32)))
              (memory (export "memory") 1)
              (data (i32.const 16) "{message}")
              (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 4096))
              (func (export "palisade:policy/request-phase@0.1.0#on-request") (param i32) (result i32)
                (call $log (i32.const 4) (i32.const 16) (i32.const {len}))
                unreachable))"#,
            len = message.len()
        );
        let mut resolve = wit_parser::Resolve::default();
        let (pkg, _) = resolve
            .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/wit"))
            .unwrap();
        let world = resolve
            .select_world(&[pkg], Some("request-policy"))
            .unwrap();
        let mut module = wat::parse_str(wat).unwrap();
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .encode()
            .unwrap()
    }

    #[test]
    fn a_host_function_panic_fails_only_that_invocation() {
        let engine = Engine::new(&Config::new().pool(4, 1 << 30)).unwrap();
        let panicking =
            WasmPolicy::new(&engine, "p", &logging_component(TEST_PANIC_MARKER)).unwrap();
        let inv = panicking.on_request(&Context::default(), Request::default());
        assert!(
            matches!(inv.result, Err(Error::HostPanic)),
            "{:?}",
            inv.result
        );

        // The next invocation gets a fresh store and works as usual (it logs, then traps).
        let inv = panicking.on_request(&Context::default(), Request::default());
        assert!(matches!(inv.result, Err(Error::HostPanic)));
        let other = WasmPolicy::new(&engine, "o", &logging_component("plain words")).unwrap();
        let inv = other.on_request(&Context::default(), Request::default());
        match inv.result {
            Err(Error::Trap { guest_message, .. }) => {
                assert_eq!(guest_message.as_deref(), Some("plain words"))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod phase_timing {
    use super::*;
    use crate::WasmPolicy;

    #[test]
    #[ignore]
    fn time_phases() {
        let engine = crate::Engine::new(&crate::Config::new().pool(64, 4 << 30)).unwrap();
        let path = std::env::var("GUEST").unwrap();
        let policy = WasmPolicy::from_file(&engine, path).unwrap();
        let n: u32 = std::env::var("N").map_or(3000, |v| v.parse().unwrap());
        let (mut t_store, mut t_inst, mut t_call, mut t_drop) = (0u128, 0u128, 0u128, 0u128);
        let linked = policy.linked();
        let export = linked.request.unwrap();
        let ctx = wit_context(&Context::default());
        let head = wit_request_head(&Request::default());
        for _ in 0..n {
            let a = Instant::now();
            let mut store = new_store(linked, policy.limits(), Bytes::new(), Vec::new());
            let b = Instant::now();
            let instance = linked.pre.instantiate(&mut store).unwrap();
            let c = Instant::now();
            let func = instance
                .get_typed_func::<(&wit::Context, &wit::RequestHead), RequestFn>(
                    &mut store, &export,
                )
                .unwrap();
            let _ = func.call(&mut store, (&ctx, &head)).unwrap();
            let d = Instant::now();
            drop(store);
            let e = Instant::now();
            t_store += (b - a).as_nanos();
            t_inst += (c - b).as_nanos();
            t_call += (d - c).as_nanos();
            t_drop += (e - d).as_nanos();
        }
        let n = n as u128;
        eprintln!(
            "store {} ns, instantiate {} ns, call {} ns, drop {} ns",
            t_store / n,
            t_inst / n,
            t_call / n,
            t_drop / n
        );
    }
}

//! Sandboxed Luau policies on the same contract, limits and typed outcomes as Wasm.
//!
//! A script defines `on_request(req, ctx)` and/or `on_response(res, ctx)`. VMs are
//! reused (a small pool per policy); every invocation runs the script in a fresh
//! environment table whose reads fall through to the sealed, read-only globals, so
//! nothing one invocation does is visible to the next. See `docs/lua.md`.

mod answer;
mod convert;
mod sandbox;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use mlua::chunk::{ChunkMode, Compiler};
use mlua::{Function, Lua, Table, Value};
use sha2::{Digest, Sha256};

use self::answer::{Answer, answer};
use self::convert::{headers_to_lua, json_to_lua, script};
use self::sandbox::{InvState, Meter, new_vm, reset_pattern_costs};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::host::LogBuffer;
use crate::limits::Limits;
use crate::message::{
    self, Context, Decision, Invocation, Pending, Request, Response, Stats, skipped,
};
use crate::policy::Phases;

/// Where a VM keeps its policy's loaded chunk.
const CHUNK_KEY: &str = "palisade.chunk";

/// How many idle VMs a policy keeps for reuse.
const POOL_SIZE: usize = 32;

/// A Luau policy: compiled once, run in a fresh environment per invocation.
#[derive(Clone)]
pub struct LuaPolicy {
    inner: Arc<LuaInner>,
    limits: Limits,
    reuse_vms: bool,
}

struct LuaInner {
    name: String,
    digest: [u8; 32],
    bytecode: Vec<u8>,
    phases: Phases,
    pool: Mutex<Vec<Lua>>,
}

impl std::fmt::Debug for LuaPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaPolicy")
            .field("name", &self.inner.name)
            .field("phases", &self.inner.phases)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The message a phase works on.
enum Phase<'a> {
    Request(&'a Request),
    Response(&'a Request, &'a Response),
}

impl LuaPolicy {
    /// Compiles `source` (Luau text) and checks that it defines a phase.
    ///
    /// # Errors
    ///
    /// [`Error::ModuleTooLarge`] over the engine's module size cap;
    /// [`Error::InvalidModule`] for precompiled bytecode (chunks are loaded as text
    /// only), a syntax error, a top level that fails, or a script defining neither
    /// `on_request` nor `on_response`.
    pub fn new(engine: &Engine, name: impl Into<String>, source: &[u8]) -> Result<Self> {
        let config = engine.config();
        if source.len() as u64 > config.max_module_size {
            return Err(Error::ModuleTooLarge {
                size: source.len() as u64,
                limit: config.max_module_size,
            });
        }
        if source.first() == Some(&0x1b) {
            return Err(Error::InvalidModule(
                "precompiled Lua bytecode is not accepted; load source text".into(),
            ));
        }
        let bytecode = Compiler::new()
            .set_optimization_level(2)
            .compile(source)
            .map_err(|e| Error::InvalidModule(message::one_line(&e.to_string(), 1_024)))?;
        let mut policy = LuaPolicy {
            inner: Arc::new(LuaInner {
                name: name.into(),
                digest: Sha256::digest(source).into(),
                bytecode,
                phases: Phases {
                    request: true,
                    response: true,
                },
                pool: Mutex::new(Vec::new()),
            }),
            limits: config.default_limits.clone(),
            reuse_vms: true,
        };
        // Run the top level once, under limits, to learn which phases it defines.
        let phases = policy.with_vm(&Context::default(), |_, env| {
            let defined = |n: &str| {
                env.raw_get::<Value>(n)
                    .map(|v| v.is_function())
                    .unwrap_or(false)
            };
            Ok(Phases {
                request: defined("on_request"),
                response: defined("on_response"),
            })
        });
        let phases = phases.0.map_err(|e| match e {
            Error::Script(m) => Error::InvalidModule(format!("the script's top level failed: {m}")),
            other => other,
        })?;
        if !phases.request && !phases.response {
            return Err(Error::InvalidModule(
                "the script defines neither `on_request` nor `on_response`".into(),
            ));
        }
        Arc::get_mut(&mut policy.inner)
            .expect("not shared yet")
            .phases = phases;
        Ok(policy)
    }

    /// Reads and compiles a script file, named after its stem.
    ///
    /// # Errors
    ///
    /// As [`LuaPolicy::new`], plus [`Error::Io`].
    pub fn from_file(engine: &Engine, path: &Path) -> Result<Self> {
        let source = crate::wasm::read_capped(path, engine.config().max_module_size)?;
        Self::new(engine, crate::wasm::file_stem(path), &source)
    }

    /// Returns this policy with other limits; the compiled script and VM pool are shared.
    pub fn with_limits(&self, limits: Limits) -> Self {
        LuaPolicy {
            inner: self.inner.clone(),
            limits,
            reuse_vms: self.reuse_vms,
        }
    }

    /// This policy with a new VM for every invocation instead of a pooled one: the
    /// baseline the VM pool is measured against (`benches/`). Isolation is the same.
    #[doc(hidden)]
    pub fn without_vm_reuse(&self) -> Self {
        LuaPolicy {
            inner: self.inner.clone(),
            limits: self.limits.clone(),
            reuse_vms: false,
        }
    }
    /// The limits invocations run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// SHA-256 of the script's source.
    pub fn digest(&self) -> [u8; 32] {
        self.inner.digest
    }
    /// Which phases the script defines.
    pub fn phases(&self) -> Phases {
        self.inner.phases
    }

    /// Runs `on_request`. Same contract as [`crate::WasmPolicy::on_request`].
    pub fn on_request(&self, ctx: &Context, req: Request) -> Invocation<Request> {
        if !self.inner.phases.request {
            return skipped(req);
        }
        let (answer, pending) = self.run(ctx, "on_request", Phase::Request(&req));
        pending.finish(answer.map(|a| match a {
            Answer::Unchanged => Decision::Continue(req),
            Answer::Respond(r) => Decision::Respond(r),
            Answer::Continue(c) => Decision::Continue(Request {
                method: c.method.unwrap_or(req.method),
                path: c.path.unwrap_or(req.path),
                query: c.query.unwrap_or(req.query),
                headers: c.headers.unwrap_or(req.headers),
                body: c.body.unwrap_or(req.body),
            }),
        }))
    }

    /// Runs `on_response`. Same contract as [`crate::WasmPolicy::on_response`].
    pub fn on_response(&self, ctx: &Context, req: &Request, res: Response) -> Invocation<Response> {
        if !self.inner.phases.response {
            return skipped(res);
        }
        let (answer, pending) = self.run(ctx, "on_response", Phase::Response(req, &res));
        pending.finish(answer.map(|a| match a {
            Answer::Unchanged => Decision::Continue(res),
            Answer::Respond(r) => Decision::Respond(r),
            Answer::Continue(c) => Decision::Continue(Response {
                status: c.status.unwrap_or(res.status),
                headers: c.headers.unwrap_or(res.headers),
                body: c.body.unwrap_or(res.body),
            }),
        }))
    }

    fn run(&self, ctx: &Context, handler: &str, phase: Phase<'_>) -> (Result<Answer>, Pending) {
        let body = match phase {
            Phase::Request(r) => r.body.clone(),
            Phase::Response(_, r) => r.body.clone(),
        };
        let limits = &self.limits;
        self.with_vm(ctx, |lua, env| {
            let f: Value = env.raw_get(handler).map_err(script)?;
            let Value::Function(f) = f else {
                return Ok(Answer::Unchanged);
            };
            let message = match phase {
                Phase::Request(r) => request_table(lua, r, &body).map_err(script)?,
                Phase::Response(_, r) => response_table(lua, r, &body).map_err(script)?,
            };
            let request_head = match phase {
                Phase::Response(req, _) => {
                    Some(request_table(lua, req, &Bytes::new()).map_err(script)?)
                }
                Phase::Request(_) => None,
            };
            let ctx_table = context_table(lua, ctx, request_head).map_err(script)?;
            let out: Value = call(&f, (message.clone(), ctx_table))?;
            answer(lua, out, &body, limits)
        })
    }

    /// Takes a VM, arms the limits, runs the script's top level in a fresh environment,
    /// then `f`; classifies failures and returns the VM to the pool.
    fn with_vm<R>(
        &self,
        ctx: &Context,
        f: impl FnOnce(&Lua, &Table) -> Result<R>,
    ) -> (Result<R>, Pending) {
        let start = Instant::now();
        let pooled = if self.reuse_vms {
            self.inner.pool.lock().expect("not poisoned").pop()
        } else {
            None
        };
        let lua = match pooled {
            Some(lua) => Ok(lua),
            None => new_vm().map_err(|e| Error::Engine(format!("creating a Lua VM: {e}"))),
        };
        let lua = match lua {
            Ok(l) => l,
            Err(e) => return (Err(e), Pending::empty(start.elapsed())),
        };
        let base = lua.used_memory();
        let limit = usize::try_from(self.limits.memory_limit()).unwrap_or(usize::MAX);
        let ceiling = base.saturating_add(limit);
        let meter = lua
            .app_data_ref::<Arc<Meter>>()
            .map(|m| Arc::clone(&m))
            .expect("every VM has a meter");
        meter.arm(self.limits.fuel_budget(), start + self.limits.deadline());
        let st = Arc::new(InvState {
            config: ctx.config.clone(),
            logs: Mutex::new(LogBuffer::new(self.limits.log_limit())),
            redacted: Mutex::new(Default::default()),
            sealer: ctx.sealer.clone(),
            meter: Arc::clone(&meter),
            peak: Default::default(),
            fuel: self.limits.fuel_budget(),
            deadline: start + self.limits.deadline(),
            timeout: self.limits.deadline(),
            memory_ceiling: ceiling,
            memory_limit: self.limits.memory_limit(),
            hit: Mutex::new(None),
        });
        lua.set_app_data(Arc::clone(&st));
        let _ = lua.set_memory_limit(ceiling);

        let result = (|| {
            reset_pattern_costs(&lua).map_err(script)?;
            let env = lua.create_table().map_err(script)?;
            let meta = lua.create_table().map_err(script)?;
            meta.raw_set("__index", lua.globals()).map_err(script)?;
            env.set_metatable(Some(meta)).map_err(script)?;
            // Each VM serves one policy: its chunk is loaded once and kept in the VM's
            // registry; every invocation points it at a new environment and runs it.
            let chunk = match lua.named_registry_value::<Option<Function>>(CHUNK_KEY) {
                Ok(Some(f)) => f,
                _ => {
                    let f = lua
                        .load(&self.inner.bytecode[..])
                        .set_mode(ChunkMode::Binary)
                        .set_name(format!("={}", self.inner.name))
                        .into_function()
                        .map_err(script)?;
                    lua.set_named_registry_value(CHUNK_KEY, &f)
                        .map_err(script)?;
                    f
                }
            };
            chunk.set_environment(env.clone()).map_err(script)?;
            call::<()>(&chunk, ())?;
            let r = f(&lua, &env);
            st.peak.fetch_max(lua.used_memory(), Ordering::Relaxed);
            r
        })();

        let hit = st.hit.lock().expect("not poisoned").take();
        let result = match (result, hit) {
            (Err(_), Some(limit)) => Err(limit),
            (Err(Error::Script(m)), None) => Err(classify_script_error(m, &st)),
            (r, _) => r,
        };
        lua.remove_app_data::<Arc<InvState>>();
        let _ = lua.set_memory_limit(0);
        // Nothing the invocation passed to a pattern function stays in the pooled VM, and
        // its garbage does not carry over: the next invocation's ceiling is measured from
        // the VM's size when it starts.
        let _ = reset_pattern_costs(&lua);
        if result.is_err() || lua.used_memory() > meter.collected_at() + POOLED_VM_SLACK {
            let _ = lua.gc_collect();
            meter.collected(lua.used_memory());
        }
        let mut pool = self.inner.pool.lock().expect("not poisoned");
        if self.reuse_vms && pool.len() < POOL_SIZE {
            pool.push(lua);
        }
        drop(pool);
        let st = Arc::try_unwrap(st).ok().expect("the VM released the state");
        let logs = st.logs.into_inner().expect("not poisoned");
        let pending = Pending {
            logs: logs.lines,
            logs_dropped: logs.dropped,
            redacted: st.redacted.into_inner().expect("not poisoned"),
            metered: true,
            survived: None,
            stats: Stats {
                fuel: st.meter.ticks.load(Ordering::Relaxed),
                memory_peak: st.peak.load(Ordering::Relaxed).saturating_sub(base) as u64,
                duration: start.elapsed(),
            },
        };
        (result, pending)
    }
}

/// A VM goes back to the pool after a full collection when it has grown by more than
/// this since the last one.
const POOLED_VM_SLACK: usize = 4 << 20;

fn call<R: mlua::FromLuaMulti>(f: &Function, args: impl mlua::IntoLuaMulti) -> Result<R> {
    f.call::<R>(args).map_err(|e| match e {
        mlua::Error::MemoryError(m) => Error::Script(format!("memory: {m}")),
        other => script(other),
    })
}

/// Maps a script error the interrupt did not cause: Lua's own stack overflow and
/// allocation failure are limits; everything else is the script's failure.
fn classify_script_error(message: String, st: &InvState) -> Error {
    if message.contains("stack overflow") {
        Error::StackOverflow
    } else if message.starts_with("memory:") || message.contains("not enough memory") {
        Error::MemoryLimit {
            requested: st.memory_ceiling as u64,
            limit: st.memory_limit,
        }
    } else {
        Error::Script(message)
    }
}

fn body_fields(lua: &Lua, t: &Table, body: &Bytes) -> mlua::Result<()> {
    // The body is decoded on first access, so a script that never reads it never pays.
    let raw = body.clone();
    let meta = lua.create_table()?;
    meta.raw_set(
        "__index",
        lua.create_function(move |lua, (t, key): (Table, String)| {
            let value = match key.as_str() {
                "raw_body" => Value::String(lua.create_string(&raw)?),
                "body" => match serde_json::from_slice::<serde_json::Value>(&raw) {
                    Ok(v) => json_to_lua(lua, &v)?,
                    Err(_) => Value::Nil,
                },
                _ => return Ok(Value::Nil),
            };
            t.raw_set(key, value.clone())?;
            Ok(value)
        })?,
    )?;
    t.set_metatable(Some(meta))
}

fn request_table(lua: &Lua, req: &Request, body: &Bytes) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("method", req.method.as_str())?;
    t.raw_set("path", req.path.as_str())?;
    t.raw_set("query", req.query.as_str())?;
    t.raw_set("headers", headers_to_lua(lua, &req.headers)?)?;
    body_fields(lua, &t, body)?;
    Ok(t)
}

fn response_table(lua: &Lua, res: &Response, body: &Bytes) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("status", res.status)?;
    t.raw_set("headers", headers_to_lua(lua, &res.headers)?)?;
    body_fields(lua, &t, body)?;
    Ok(t)
}

fn context_table(lua: &Lua, ctx: &Context, request: Option<Table>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tenant", ctx.tenant.as_str())?;
    t.raw_set("route", ctx.route.as_str())?;
    t.raw_set("correlation_id", ctx.correlation_id.as_str())?;
    let config = lua.create_table()?;
    for (k, v) in &ctx.config {
        config.raw_set(k.as_str(), v.as_str())?;
    }
    t.raw_set("config", config)?;
    if let Some(id) = &ctx.identity {
        let identity = lua.create_table()?;
        identity.raw_set("subject", id.subject.as_str())?;
        identity.raw_set(
            "scopes",
            lua.create_sequence_from(id.scopes.iter().map(String::as_str))?,
        )?;
        let claims = lua.create_table()?;
        for (k, v) in &id.claims {
            claims.raw_set(k.as_str(), json_to_lua(lua, v)?)?;
        }
        identity.raw_set("claims", claims)?;
        t.raw_set("identity", identity)?;
    }
    if let Some(r) = request {
        t.raw_set("request", r)?;
    }
    Ok(t)
}

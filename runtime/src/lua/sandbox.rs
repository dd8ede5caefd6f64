//! Building a sandboxed Luau VM: what is removed, what is guarded, what is added.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{LightUserData, Lua, MultiValue, Table, Value, VmState};

use crate::error::Error;
use crate::host::LogBuffer;
use crate::message::LogLevel;
use crate::report::Redactions;

/// Globals removed before the VM is sealed: no I/O, no OS, no module loading, no
/// bytecode or source loading at run time, no debug access, no environment tricks,
/// no ambient time or randomness.
pub(crate) const REMOVED_GLOBALS: &[&str] = &[
    "io",
    "os",
    "package",
    "require",
    "debug",
    "dofile",
    "loadfile",
    "load",
    "loadstring",
    "getfenv",
    "setfenv",
    "newproxy",
    "gcinfo",
    "collectgarbage",
    "print",
];

/// The most steps a Lua pattern function may be expected to take in the worst case.
/// Luau's matcher calls the interrupt at every step, so fuel and the deadline stop a
/// pattern mid-match; calls whose worst case exceeds this are refused before they start,
/// with an error that names the pattern function instead of a spent budget.
pub(crate) const MAX_PATTERN_STEPS: f64 = 1e8;

/// The marker key of a reply table made by `palisade.respond`.
static REPLY_MARKER: u8 = 0;

pub(crate) fn reply_marker() -> Value {
    Value::LightUserData(LightUserData(std::ptr::addr_of!(REPLY_MARKER) as *mut _))
}

/// The state of the invocation running in a VM, reached by the host functions and the
/// interrupt through the VM's app data.
pub(crate) struct InvState {
    pub(crate) config: Vec<(String, String)>,
    pub(crate) logs: Mutex<LogBuffer>,
    pub(crate) redacted: Mutex<Redactions>,
    /// Field encryption, when the route grants it to this policy.
    pub(crate) sealer: Option<crate::message::Sealer>,
    /// The VM's interrupt counters, armed for this invocation.
    pub(crate) meter: Arc<Meter>,
    /// The largest heap size seen at an interrupt.
    pub(crate) peak: AtomicUsize,
    pub(crate) fuel: Option<u64>,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    /// Absolute VM memory at which this invocation is over its limit.
    pub(crate) memory_ceiling: usize,
    pub(crate) memory_limit: u64,
    /// The first limit hit; sticky, so `pcall` cannot swallow it for long.
    pub(crate) hit: Mutex<Option<Error>>,
}

impl InvState {
    fn trip(&self, e: Error) -> mlua::Error {
        let msg = e.to_string();
        self.hit.lock().expect("not poisoned").get_or_insert(e);
        self.meter.tripped.store(true, Ordering::Relaxed);
        mlua::Error::runtime(msg)
    }
}

/// The interrupt runs at every loop back-edge, C function call and pattern-matching
/// step (Luau's matcher calls it from C). Its common path reads the VM's [`Meter`]: the
/// fuel, a tripped limit and the deadline against the engine's coarse clock (a load; it
/// lags by at most the epoch tick, 1 ms by default). Every this many ticks it also looks
/// the invocation up and checks the deadline against the real clock and the heap (its
/// peak, and the limit a script that caught a memory error with `pcall` must not
/// outlive).
const SLOW_EVERY: u64 = 32;

/// What the interrupt's fast path reads: one per VM (its app data, and the interrupt's
/// own reference), armed by the host for each invocation.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Interrupts so far in this invocation: its fuel.
    pub(crate) ticks: AtomicU64,
    /// The most ticks allowed (`u64::MAX`: unlimited).
    fuel: AtomicU64,
    /// A limit tripped: the slow path raises it again at every tick.
    tripped: AtomicBool,
    /// The deadline on the coarse clock (microseconds since its start).
    deadline_us: AtomicU64,
    /// The VM's size after its last full collection.
    collected_at: AtomicUsize,
}

impl Meter {
    /// Resets the counters for an invocation with this fuel and deadline.
    pub(crate) fn arm(&self, fuel: Option<u64>, deadline: Instant) {
        self.ticks.store(0, Ordering::Relaxed);
        self.fuel.store(fuel.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.tripped.store(false, Ordering::Relaxed);
        let at = deadline.saturating_duration_since(crate::engine::clock_start());
        self.deadline_us.store(
            u64::try_from(at.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The VM's size after its last full collection.
    pub(crate) fn collected_at(&self) -> usize {
        self.collected_at.load(Ordering::Relaxed)
    }

    /// Records a full collection that left the VM at `size` bytes.
    pub(crate) fn collected(&self, size: usize) {
        self.collected_at.store(size, Ordering::Relaxed);
    }

    fn running(&self, ticks: u64) -> bool {
        ticks <= self.fuel.load(Ordering::Relaxed)
            && !ticks.is_multiple_of(SLOW_EVERY)
            && !self.tripped.load(Ordering::Relaxed)
            && crate::engine::coarse_now_us() < self.deadline_us.load(Ordering::Relaxed)
    }
}

fn state(lua: &Lua) -> Option<Arc<InvState>> {
    lua.app_data_ref::<Arc<InvState>>().map(|s| Arc::clone(&s))
}

/// A fresh sandboxed VM with the `palisade` table. Its globals, libraries and the
/// string metatable are read-only; scripts run in a per-invocation environment.
pub(crate) fn new_vm() -> mlua::Result<Lua> {
    let lua = Lua::new();
    let globals = lua.globals();
    for name in REMOVED_GLOBALS {
        globals.raw_set(*name, Value::Nil)?;
    }
    // No ambient randomness either.
    let math: Table = globals.raw_get("math")?;
    math.raw_set("random", Value::Nil)?;
    math.raw_set("randomseed", Value::Nil)?;
    // `collectgarbage("count")` only.
    globals.raw_set(
        "collectgarbage",
        lua.create_function(|lua, opt: Option<String>| match opt.as_deref() {
            None | Some("count") => Ok(lua.used_memory() as f64 / 1024.0),
            Some(other) => Err(mlua::Error::runtime(format!(
                "collectgarbage(\"{other}\") is not allowed"
            ))),
        })?,
    )?;
    guard_patterns(&lua)?;
    // `pcall` and `xpcall` must not swallow running out of memory: the error is raised
    // again, so the invocation ends with the limit instead of looping near it.
    lua.load(
        r#"
        local raw_pcall, raw_xpcall, pack, unpack, rawerror = pcall, xpcall, table.pack, table.unpack, error
        local OOM = "not enough memory"
        local function check(r)
            if not r[1] and r[2] == OOM then rawerror(OOM, 0) end
            return unpack(r, 1, r.n)
        end
        pcall = function(f, ...) return check(pack(raw_pcall(f, ...))) end
        xpcall = function(f, h, ...) return check(pack(raw_xpcall(f, h, ...))) end
        "#,
    )
    .set_name("=palisade")
    .exec()?;
    // Created before sealing, so the registry entry exists for every invocation.
    super::convert::array_metatable(&lua)?;
    let palisade = palisade_table(&lua)?;
    globals.raw_set("palisade", palisade.clone())?;
    globals.raw_set(
        "print",
        lua.create_function(|lua, args: MultiValue| {
            let text: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_default())
                .collect();
            log(lua, LogLevel::Info, text.join("\t"));
            Ok(())
        })?,
    )?;
    lua.sandbox(true)?;
    palisade.set_readonly(true);
    let meter = Arc::new(Meter::default());
    lua.set_app_data(Arc::clone(&meter));
    lua.set_interrupt(move |lua| {
        // The fast path: no look-up, no lock, no system call.
        let ticks = meter.ticks.load(Ordering::Relaxed) + 1;
        meter.ticks.store(ticks, Ordering::Relaxed);
        if meter.running(ticks) {
            return Ok(VmState::Continue);
        }
        let Some(st) = state(lua) else {
            return Ok(VmState::Continue);
        };
        if let Some(e) = st.hit.lock().expect("not poisoned").as_ref() {
            return Err(mlua::Error::runtime(e.to_string()));
        }
        if st.fuel.is_some_and(|f| ticks > f) {
            return Err(st.trip(Error::FuelExhausted {
                limit: st.fuel.unwrap_or(0),
            }));
        }
        if Instant::now() > st.deadline {
            return Err(st.trip(Error::Deadline(st.timeout)));
        }
        // A script that caught a memory error with pcall is stopped here.
        let used = lua.used_memory();
        st.peak.fetch_max(used, Ordering::Relaxed);
        if used + used / 64 >= st.memory_ceiling {
            return Err(st.trip(Error::MemoryLimit {
                requested: used as u64,
                limit: st.memory_limit,
            }));
        }
        Ok(VmState::Continue)
    });
    Ok(lua)
}

fn log(lua: &Lua, level: LogLevel, message: String) {
    if let Some(st) = state(lua) {
        st.logs.lock().expect("not poisoned").push(level, message);
    }
}

fn palisade_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("null", Value::NULL)?;
    t.raw_set("array_mt", super::convert::array_metatable(lua)?)?;
    t.raw_set(
        "log",
        lua.create_function(|lua, (a, b): (String, Option<String>)| {
            let (level, message) = match b {
                None => (LogLevel::Info, a),
                Some(m) => (parse_level(&a)?, m),
            };
            log(lua, level, message);
            Ok(())
        })?,
    )?;
    t.raw_set(
        "config",
        lua.create_function(|lua, key: String| {
            Ok(state(lua).and_then(|st| {
                st.config
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
            }))
        })?,
    )?;
    t.raw_set(
        "seal",
        lua.create_function(
            |lua, (path, value, mode): (String, Value, Option<String>)| {
                let st = state(lua).ok_or_else(|| mlua::Error::runtime("no invocation"))?;
                let deterministic = match mode.as_deref() {
                    None | Some("randomized") => false,
                    Some("deterministic") => true,
                    Some(_) => {
                        return Err(mlua::Error::runtime(
                            "palisade.seal: mode must be \"randomized\" or \"deterministic\"",
                        ));
                    }
                };
                let fail = |e: String| mlua::Error::runtime(format!("palisade.seal: {e}"));
                let mut budget = super::convert::Budget::new(crate::host::MAX_SEAL_VALUE as u64);
                let text = super::convert::lua_to_json(lua, &value, &mut budget, 0)
                    .map_err(|e| fail(e.to_string()))?
                    .to_string();
                // Fuel: the interrupt's ticks, one per KiB sealed beyond the call.
                st.meter
                    .ticks
                    .fetch_add(1 + text.len() as u64 / 1024, Ordering::Relaxed);
                let mut redacted = st.redacted.lock().expect("not poisoned");
                crate::host::seal(
                    st.sealer.as_ref(),
                    &mut redacted,
                    &path,
                    &text,
                    deterministic,
                )
                .map_err(fail)
            },
        )?,
    )?;
    t.raw_set(
        "redacted",
        lua.create_function(|lua, path: mlua::LuaString| {
            if let Some(st) = state(lua) {
                let mut r = st.redacted.lock().expect("not poisoned");
                match path.to_str() {
                    Ok(path) => r.report(&path),
                    Err(_) => r.dropped += 1,
                }
            }
            Ok(())
        })?,
    )?;
    t.raw_set(
        "respond",
        lua.create_function(
            |lua, (status, body, headers): (u16, Option<Value>, Option<Table>)| {
                let reply = lua.create_table()?;
                reply.raw_set(reply_marker(), true)?;
                reply.raw_set("status", status)?;
                reply.raw_set("body", body.unwrap_or(Value::Nil))?;
                reply.raw_set("headers", headers)?;
                Ok(reply)
            },
        )?,
    )?;
    t.raw_set(
        "deny",
        lua.create_function(|lua, (status, message): (u16, Option<String>)| {
            let reply = lua.create_table()?;
            reply.raw_set(reply_marker(), true)?;
            reply.raw_set("status", status)?;
            let body =
                serde_json::json!({ "error": message.unwrap_or_else(|| "forbidden".into()) })
                    .to_string();
            reply.raw_set("raw_body", body)?;
            let headers = lua.create_table()?;
            headers.raw_set("content-type", "application/json")?;
            reply.raw_set("headers", headers)?;
            Ok(reply)
        })?,
    )?;
    t.raw_set(
        "hmac_sha256",
        lua.create_function(|_, (key, message): (mlua::LuaString, mlua::LuaString)| {
            use hmac::{Hmac, Mac};
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key.as_bytes())
                .expect("any key length");
            mac.update(&message.as_bytes());
            Ok(hex::encode(mac.finalize().into_bytes()))
        })?,
    )?;
    t.raw_set(
        "json_decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let v: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("invalid JSON: {e}")))?;
            super::convert::json_to_lua(lua, &v)
        })?,
    )?;
    t.raw_set(
        "json_encode",
        lua.create_function(|lua, v: Value| {
            let mut budget = super::convert::Budget::new(64 << 20);
            let json = super::convert::lua_to_json(lua, &v, &mut budget, 0)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            Ok(json.to_string())
        })?,
    )?;
    Ok(t)
}

fn parse_level(s: &str) -> mlua::Result<LogLevel> {
    Ok(match s {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        other => return Err(mlua::Error::runtime(format!("unknown log level `{other}`"))),
    })
}

/// Wraps `string.find`, `match`, `gmatch` and `gsub`: a call whose worst-case step count
/// (subject length to the power of the pattern's backtracking quantifiers, plus one when
/// unanchored) exceeds [`MAX_PATTERN_STEPS`] is refused with an error.
///
/// The wrappers are Lua: a pattern's cost model ([`pattern_cost`]) is computed once by the
/// host and kept in a table the host empties before each invocation
/// ([`reset_pattern_costs`]), so a policy that calls `find` in a loop pays a table
/// look-up, not a round trip through the host (2.3 µs per call before).
fn guard_patterns(lua: &Lua) -> mlua::Result<()> {
    let cost =
        lua.create_function(|_, pattern: mlua::LuaString| Ok(pattern_cost(&pattern.as_bytes())))?;
    let holder = lua.create_table()?;
    lua.set_named_registry_value(PATTERN_COSTS, &holder)?;
    lua.load(
        r#"
        local cost, holder, limit, linear = ...
        local string, type, error, format = string, type, error, string.format
        local function guard(name, s, p)
            if type(s) ~= "string" or type(p) ~= "string" then return end
            local costs = holder[1]
            if costs == nil then costs = {}; holder[1] = costs end
            local c = costs[p]
            if c == nil then
                local exponent, factor = cost(p)
                c = {exponent, factor}
                -- Only short patterns are kept: long ones are rare and would hold memory.
                if #p <= 256 then costs[p] = c end
            end
            local n = #s
            local steps = (n < 1 and 1 or n) ^ c[1] * c[2]
            -- A linear pattern (at most one repetition, anchored, or none) costs a bounded
            -- number of steps per start, and every start ticks the interrupt: fuel and the
            -- deadline bound it on any subject the memory limit allows.
            if steps > limit and (c[1] >= 2 or c[2] > linear) then
                error(format("string.%s: pattern too expensive for a subject of %d bytes (worst case %.0e steps, limit %.0e)",
                    name, n, steps, limit), 3)
            end
        end
        local find, match, gmatch, gsub = string.find, string.match, string.gmatch, string.gsub
        string.find = function(s, p, init, plain)
            if not plain then guard("find", s, p) end
            return find(s, p, init, plain)
        end
        string.match = function(s, p, init)
            guard("match", s, p)
            return match(s, p, init)
        end
        string.gmatch = function(s, p)
            guard("gmatch", s, p)
            return gmatch(s, p)
        end
        string.gsub = function(s, p, repl, n)
            guard("gsub", s, p)
            return gsub(s, p, repl, n)
        end
        "#,
    )
    .set_name("=palisade")
    .call::<()>((cost, holder, MAX_PATTERN_STEPS, MAX_LINEAR_STEPS_PER_START))
}

/// A pattern whose cost is linear in the subject with at most this many steps per start
/// is never refused (see `guard_patterns`).
const MAX_LINEAR_STEPS_PER_START: f64 = 65536.0;

/// The registry key of the table holding the pattern-cost cache.
const PATTERN_COSTS: &str = "palisade.pattern_costs";

/// Empties the pattern-cost cache: nothing an invocation passed to a pattern function
/// outlives it.
pub(crate) fn reset_pattern_costs(lua: &Lua) -> mlua::Result<()> {
    let holder: Table = lua.named_registry_value(PATTERN_COSTS)?;
    holder.raw_set(1, Value::Nil)
}

/// The cost model of `pattern` with Lua's backtracking matcher: matching it against `n`
/// bytes takes at most `max(n, 1)^exponent * factor` steps. Returns `(exponent, factor)`.
pub(crate) fn pattern_cost(pattern: &[u8]) -> (i32, f64) {
    let anchored = pattern.first() == Some(&b'^');
    let mut quantifiers = 0i32;
    let mut optionals = 0i32;
    let mut i = usize::from(anchored);
    while i < pattern.len() {
        match pattern[i] {
            // `%bxy` and back-references (`%1`) scan the subject without calling the
            // interrupt: each may cost n steps, like a repetition.
            b'%' => match pattern.get(i + 1) {
                Some(b'b') => {
                    quantifiers += 1;
                    i += 4;
                }
                Some(b'1'..=b'9') => {
                    quantifiers += 1;
                    i += 2;
                }
                _ => i += 2,
            },
            b'[' => {
                // Skip the set: `]` right after `[` or `[^` is literal.
                i += 1;
                if pattern.get(i) == Some(&b'^') {
                    i += 1;
                }
                if pattern.get(i) == Some(&b']') {
                    i += 1;
                }
                while i < pattern.len() && pattern[i] != b']' {
                    i += if pattern[i] == b'%' { 2 } else { 1 };
                }
                i += 1;
            }
            // `*`, `+`, `-` may each try every length; `?` tries two.
            b'*' | b'+' | b'-' if i > 0 => {
                quantifiers += 1;
                i += 1;
            }
            b'?' if i > 0 => {
                optionals += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    // With no repetition, each start costs at most one comparison per pattern byte.
    let per_start = if quantifiers == 0 {
        (pattern.len() as f64).max(1.0)
    } else {
        1.0
    };
    (
        quantifiers + i32::from(!anchored),
        2f64.powi(optionals) * per_start,
    )
}

/// The worst-case steps of matching `pattern` against `len` bytes with Lua's
/// backtracking matcher.
#[cfg(test)]
pub(crate) fn worst_case_steps(len: usize, pattern: &[u8]) -> f64 {
    let (exponent, factor) = pattern_cost(pattern);
    (len as f64).max(1.0).powi(exponent) * factor
}

#[cfg(test)]
mod tests {
    use super::worst_case_steps;

    #[test]
    fn pattern_cost_model() {
        // The catalogue's pathological case is far over the limit.
        assert!(worst_case_steps(100_000, "a*".repeat(20).as_bytes()) > 1e100);
        // A literal search is linear.
        assert_eq!(worst_case_steps(1_000, b"abc"), 3_000.0);
        // One repetition, unanchored: quadratic; anchored: linear.
        assert_eq!(worst_case_steps(1_000, b"%d+"), 1e6);
        assert_eq!(worst_case_steps(1_000, b"^%d+"), 1e3);
        // Sets and escapes do not count as quantifiers.
        assert_eq!(worst_case_steps(10, b"[%+%-*?]%%"), 10.0 * 10.0);
        // `?` doubles.
        assert_eq!(worst_case_steps(10, b"a?b?"), 10.0 * 4.0 * 4.0);
        // `%b` and back-references scan like a repetition.
        assert_eq!(worst_case_steps(1_000, b"%b()"), 1e6);
        assert_eq!(worst_case_steps(1_000, b"^(a)%1"), 1e3);
        assert_eq!(worst_case_steps(1_000, b"^(a+)%1"), 1e6);
    }
}

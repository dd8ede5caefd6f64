//! Lua policies: catalogue items 12-22, isolation and limits.

use std::time::Duration;

use bytes::Bytes;
use palisade_runtime::{Decision, Error, Limits, LuaPolicy};
use serde_json::{Value, json};

use crate::fixtures::{ctx, engine, get};

fn lua(source: &str) -> LuaPolicy {
    LuaPolicy::new(engine(), "test", source.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn quick() -> Limits {
    Limits::default().timeout(Duration::from_millis(200))
}

/// Runs `on_request` and returns the JSON body of a `palisade.respond(200, {...})`.
fn respond_json(policy: &LuaPolicy, tenant: &str) -> Value {
    let inv = policy.on_request(&ctx(tenant), get("/"));
    match inv.result {
        Ok(Decision::Respond(r)) => serde_json::from_slice(&r.body).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn err(policy: &LuaPolicy) -> Error {
    policy
        .on_request(&ctx("t"), get("/"))
        .result
        .expect_err("must fail")
}

#[test]
fn item12_io_os_require_loadlib_dofile_loadfile_are_unreachable() {
    let p = lua(r#"function on_request()
        return palisade.respond(200, {io = type(io), os = type(os), require = type(require), package = type(package),
            dofile = type(dofile), loadfile = type(loadfile), print_is_log = type(print)})
    end"#);
    let v = respond_json(&p, "t");
    for k in ["io", "os", "require", "package", "dofile", "loadfile"] {
        assert_eq!(v[k], "nil", "{k} is reachable");
    }
    for call in [
        "os.execute('id')",
        "io.open('/etc/passwd')",
        "require('os')",
        "package.loadlib('x', 'y')",
        "dofile('/etc/passwd')",
        "loadfile('/etc/passwd')",
    ] {
        let p = lua(&format!("function on_request() {call} end"));
        assert!(
            matches!(err(&p), Error::Script(m) if m.contains("attempt to")),
            "{call}"
        );
    }
}

#[test]
fn item13_bytecode_is_rejected() {
    let refused = LuaPolicy::new(engine(), "bc", b"\x1bLua\x54\x00 whatever").unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidModule(m) if m.contains("bytecode")),
        "{refused:?}"
    );
    let p = lua("function on_request() return load(string.dump(on_request)) end");
    assert!(matches!(err(&p), Error::Script(_)));
    let p = lua(
        r#"function on_request() return palisade.respond(200, {load = type(load), loadstring = type(loadstring), dump = type(string.dump)}) end"#,
    );
    assert_eq!(
        respond_json(&p, "t"),
        json!({"load": "nil", "loadstring": "nil", "dump": "nil"})
    );
}

#[test]
fn item14_debug_fenv_and_rawset_on_shared_tables_have_no_effect() {
    let p = lua(r#"function on_request()
        local wrote = pcall(function() rawset(_G, "leak", 1) end)
        local wrote_string = pcall(function() rawset(string, "leak", 1) end)
        return palisade.respond(200, {debug = type(debug), getfenv = type(getfenv), setfenv = type(setfenv),
            rawset_G = wrote, rawset_string = wrote_string, leak = type(leak)})
    end"#);
    assert_eq!(
        respond_json(&p, "t"),
        json!({"debug": "nil", "getfenv": "nil", "setfenv": "nil", "rawset_G": false, "rawset_string": false, "leak": "nil"})
    );
}

#[test]
fn item15_stdlib_and_metatable_changes_are_refused_and_invisible_to_others() {
    let tamper = lua(r#"function on_request()
        local a = pcall(function() string.upper = function() return "pwned" end end)
        local b = pcall(function() getmetatable("").__index = {upper = function() return "pwned" end} end)
        local c = pcall(function() setmetatable(string, {}) end)
        local d = pcall(function() table.insert = nil end)
        shadow = "mine"
        return palisade.respond(200, {a = a, b = b, c = c, d = d, upper = ("x"):upper()})
    end"#);
    assert_eq!(
        respond_json(&tamper, "a"),
        json!({"a": false, "b": false, "c": false, "d": false, "upper": "X"})
    );
    // The same VM (reused) and another tenant's policy see the originals and no leftovers.
    let observer = lua(
        r#"function on_request() return palisade.respond(200, {upper = string.upper("x"), shadow = type(shadow), insert = type(table.insert)}) end"#,
    );
    for _ in 0..3 {
        assert_eq!(respond_json(&tamper, "a")["upper"], "X");
        assert_eq!(
            respond_json(&observer, "b"),
            json!({"upper": "X", "shadow": "nil", "insert": "function"})
        );
    }
}

#[test]
fn globals_written_by_one_invocation_are_gone_in_the_next() {
    let p = lua(r#"function on_request()
        counter = (counter or 0) + 1
        return palisade.respond(200, {counter = counter})
    end"#);
    for _ in 0..5 {
        assert_eq!(respond_json(&p, "t"), json!({"counter": 1}));
    }
}

#[test]
fn item16_infinite_loops_are_stopped_by_deadline_and_budget() {
    let p =
        lua("function on_request() while true do end end").with_limits(quick().unlimited_fuel());
    assert!(matches!(err(&p), Error::Deadline(_)));
    let p = lua("function on_request() while true do end end")
        .with_limits(quick().fuel(10_000).timeout(Duration::from_secs(30)));
    assert!(matches!(err(&p), Error::FuelExhausted { limit: 10_000 }));
    // pcall cannot swallow the stop.
    let p =
        lua("function on_request() while true do pcall(function() while true do end end) end end")
            .with_limits(quick());
    assert!(matches!(err(&p), Error::Deadline(_)));
}

#[test]
fn item16_the_deadline_is_seen_at_the_first_tick_after_it() {
    // A dozen long C calls and nothing else: fewer ticks than the interrupt's periodic
    // check needs, so only a deadline read at every tick stops it (each call is a few ms
    // of memset; the deadline is 1 ms).
    let p = lua(r#"function on_request()
        local s
        for _, n in ipairs({24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24}) do
            s = string.rep("x", 2 ^ n)
        end
        return palisade.respond(200, {n = #s})
    end"#)
    .with_limits(
        Limits::default()
            .unlimited_fuel()
            .memory(1 << 30)
            .timeout(Duration::from_millis(1)),
    );
    assert!(matches!(err(&p), Error::Deadline(_)));
}

#[test]
fn item17_memory_bombs_hit_the_memory_limit() {
    for bomb in [
        r#"local s = string.rep("x", 2^30) palisade.log(tostring(#s))"#,
        r#"local s = string.rep("x", 2^25) palisade.log(tostring(#s))"#,
        r#"local s = "x" while true do s = s .. s end"#,
        r#"local t = {} for i = 1, 1e9 do t[i] = i end"#,
        r#"local t, i = {}, 0 while true do i = i + 1 pcall(function() table.insert(t, string.rep("y", 1e6) .. i) end) end"#,
    ] {
        let p = lua(&format!("function on_request() {bomb} end"))
            .with_limits(quick().memory(16 << 20).timeout(Duration::from_secs(5)));
        let inv = p.on_request(&ctx("t"), get("/"));
        assert!(
            matches!(inv.result, Err(Error::MemoryLimit { limit, .. }) if limit == 16 << 20),
            "{bomb}: {:?}",
            inv.result
        );
    }
    // The VM recovers for the next invocation.
    let ok = lua("function on_request(req) return req end").with_limits(quick().memory(16 << 20));
    assert!(ok.on_request(&ctx("t"), get("/")).result.is_ok());
}

#[test]
fn item18_pathological_patterns_are_refused_before_running() {
    let p = lua(
        r#"function on_request() return string.find(("a"):rep(1e5), ("a*"):rep(20) .. "b") end"#,
    )
    .with_limits(quick());
    assert!(matches!(err(&p), Error::Script(m) if m.contains("pattern too expensive")));
    let p = lua(r#"function on_request() return string.gsub(("a"):rep(1e6), "a*b", "") end"#)
        .with_limits(quick());
    assert!(matches!(err(&p), Error::Script(m) if m.contains("pattern too expensive")));
    // `%b` scans the rest of the subject at every start without ticking: a repetition.
    let p = lua(r#"function on_request() return string.find(("("):rep(1e5), "%b()") end"#)
        .with_limits(quick());
    assert!(matches!(err(&p), Error::Script(m) if m.contains("pattern too expensive")));
    // A linear pattern is allowed on any subject: each start ticks the interrupt.
    let p = lua(r#"function on_request()
        local needle = ("needle"):rep(5)
        return palisade.respond(200, {at = string.find(("a"):rep(4e6) .. needle, needle)})
    end"#);
    assert_eq!(respond_json(&p, "t"), json!({"at": 4_000_001}));
    // Ordinary use is fine, and plain find is always allowed.
    let p = lua(r#"function on_request()
        local s = ("ab "):rep(2000)
        return palisade.respond(200, {n = select(2, s:gsub("%w+", "x")), plain = s:find("b a", 1, true)})
    end"#);
    assert_eq!(respond_json(&p, "t"), json!({"n": 2000, "plain": 2}));
}

#[test]
fn item18_pattern_costs_cached_by_one_invocation_are_gone_before_the_next() {
    // 100,000 distinct patterns, each cached by the guard; the VM goes back to the pool.
    let p = lua(r#"function on_request(req)
        if req.path == "/fill" then
            local pad = ("x"):rep(240)
            for i = 1, 100000 do string.find("y", pad .. i) end
        end
        return palisade.respond(200, {kib = collectgarbage("count")})
    end"#)
    .with_limits(
        Limits::default()
            .memory(512 << 20)
            .timeout(Duration::from_secs(30)),
    );
    let size = |path: &str| match p.on_request(&ctx("t"), get(path)).result {
        Ok(Decision::Respond(r)) => serde_json::from_slice::<Value>(&r.body).unwrap()["kib"]
            .as_f64()
            .unwrap(),
        other => panic!("{other:?}"),
    };
    let filled = size("/fill");
    assert!(filled > 20_000.0, "the cache held {filled} KiB");
    let next = size("/");
    assert!(next < 8_192.0, "the next invocation started at {next} KiB");
}

#[test]
fn item18_fuel_and_the_deadline_stop_a_pattern_mid_match() {
    // Under the guard's limit (9000^2 < 10^8), but tens of millions of matcher steps: Luau's
    // matcher ticks the interrupt at every step, so the budgets reach inside it.
    let slow = r#"function on_request() return string.find(("a"):rep(9000), "a*b") end"#;
    let p = lua(slow).with_limits(quick().fuel(100_000).timeout(Duration::from_secs(30)));
    assert!(matches!(err(&p), Error::FuelExhausted { limit: 100_000 }));
    let p = lua(slow).with_limits(quick().unlimited_fuel().timeout(Duration::from_millis(20)));
    assert!(matches!(err(&p), Error::Deadline(_)));
}

#[test]
fn item19_deep_recursion_is_an_error_not_an_abort() {
    let p =
        lua("local function f(n) return 1 + f(n + 1) end function on_request() return f(0) end")
            .with_limits(quick().timeout(Duration::from_secs(10)));
    let e = err(&p);
    assert!(
        matches!(e, Error::StackOverflow | Error::MemoryLimit { .. }),
        "{e:?}"
    );
}

#[test]
fn item20_coroutines_and_hostile_metamethods_are_bounded() {
    let p = lua(r#"function on_request() local cs = {} while true do table.insert(cs, coroutine.create(function() end)) end end"#)
        .with_limits(quick().memory(8 << 20).timeout(Duration::from_secs(5)));
    assert!(matches!(
        err(&p),
        Error::MemoryLimit { .. } | Error::Deadline(_)
    ));
    // Metamethods on what is handed back never run on the host's path.
    let p = lua(r#"function on_request(req)
        local evil = function() while true do end end
        req.headers = setmetatable({["x-a"] = "1"}, {__index = evil, __tostring = evil, __len = evil, __iter = evil})
        return setmetatable(req, {__index = evil, __newindex = evil, __tostring = evil})
    end"#)
    .with_limits(quick());
    let inv = p.on_request(&ctx("t"), get("/"));
    let Ok(Decision::Continue(req)) = inv.result else {
        panic!("{:?}", inv.result)
    };
    assert_eq!(req.headers, vec![("x-a".to_string(), "1".to_string())]);
    let p = lua(r#"function on_request() error(setmetatable({}, {__tostring = function() while true do end end})) end"#).with_limits(quick());
    assert!(matches!(err(&p), Error::Script(_) | Error::Deadline(_)));
}

#[test]
fn item21_collectgarbage_beyond_count_is_refused() {
    let p = lua(r#"function on_request()
        return palisade.respond(200, {stop = pcall(collectgarbage, "stop"), collect = pcall(collectgarbage, "collect"), count = type(collectgarbage("count"))})
    end"#);
    assert_eq!(
        respond_json(&p, "t"),
        json!({"stop": false, "collect": false, "count": "number"})
    );
}

#[test]
fn item22_cyclic_deep_or_huge_tables_are_refused() {
    for (what, script) in [
        ("cyclic", "local t = {} t.self = t req.body = t return req"),
        (
            "deep",
            "local t = {} local c = t for i = 1, 1e5 do c.x = {} c = c.x end req.body = t return req",
        ),
        (
            "huge",
            "local t = {} for i = 1, 2e6 do t[i] = i end req.body = t return req",
        ),
    ] {
        let p = lua(&format!("function on_request(req) {script} end"))
            .with_limits(quick().memory(256 << 20).timeout(Duration::from_secs(10)));
        let e = err(&p);
        assert!(
            matches!(e, Error::InvalidOutput(_) | Error::OutputTooLarge { .. }),
            "{what}: {e:?}"
        );
    }
    let p = lua(r#"function on_request(req) req.raw_body = string.rep("z", 3e6) return req end"#)
        .with_limits(quick().max_output(1 << 20));
    assert!(matches!(
        err(&p),
        Error::OutputTooLarge {
            limit: 1_048_576,
            ..
        }
    ));
}

#[test]
fn lua_body_is_lazy_and_decoded_json() {
    let p = lua(r#"function on_request(req) req.headers["x-seen"] = "yes" return req end"#);
    let mut big = get("/");
    big.body = Bytes::from(vec![b'x'; 1 << 20]);
    let inv = p.on_request(&ctx("t"), big);
    let Ok(Decision::Continue(out)) = inv.result else {
        panic!()
    };
    assert_eq!(out.body.len(), 1 << 20);
    assert!(
        inv.stats.memory_peak < 256 << 10,
        "an unread body must not be copied into the VM: {}",
        inv.stats.memory_peak
    );

    let p = lua(r#"function on_request(req) req.body.n = req.body.n + 1 return req end"#);
    let mut r = get("/");
    r.body = Bytes::from(r#"{"n": 1, "keep": [], "z": null}"#);
    let Ok(Decision::Continue(out)) = p.on_request(&ctx("t"), r).result else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&out.body).unwrap(),
        json!({"n": 2, "keep": [], "z": null})
    );
}

#[test]
fn lua_failures_are_typed_like_wasm_ones() {
    assert!(matches!(
        LuaPolicy::new(engine(), "s", b"function on_request( end"),
        Err(Error::InvalidModule(_))
    ));
    assert!(
        matches!(LuaPolicy::new(engine(), "s", b"local x = 1"), Err(Error::InvalidModule(m)) if m.contains("neither"))
    );
    let p = lua(r#"function on_request() error("boom") end"#);
    assert!(matches!(err(&p), Error::Script(m) if m.contains("boom")));
    let p = lua(r#"function on_request(req) req.headers["x-bad"] = "a\r\nb" return req end"#);
    assert!(matches!(err(&p), Error::InvalidOutput(_)));
    let p = lua("function on_request() return 42 end");
    assert!(matches!(err(&p), Error::InvalidOutput(_)));
    let p = lua(r#"function on_request() return palisade.deny(403, "no") end"#);
    let Ok(Decision::Respond(r)) = p.on_request(&ctx("t"), get("/")).result else {
        panic!()
    };
    assert_eq!((r.status, &r.body[..]), (403, &br#"{"error":"no"}"#[..]));
}

// The shared cases (each shipped policy's `cases.json`, run against its Wasm build and
// its Lua port) are `authoring::every_shipped_policy_passes_its_cases_in_every_language`.

#[test]
fn a_returned_table_without_headers_keeps_them() {
    let p = lua("function on_request(req) return {path = '/rewritten'} end");
    let mut r = get("/a");
    r.headers = vec![("accept".into(), "*/*".into())];
    let Ok(Decision::Continue(out)) = p.on_request(&ctx("t"), r).result else {
        panic!()
    };
    assert_eq!((out.path.as_str(), out.headers.len()), ("/rewritten", 1));
}

#[test]
fn one_lua_policy_serves_many_threads_without_crosstalk() {
    let p = lua(r#"function on_request(req, ctx)
        mine = ctx.tenant
        for i = 1, 200 do local _ = {i} end
        req.headers["x-tenant"] = mine
        req.body = {tenant = mine}
        return req
    end"#);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let tenant = format!("tenant-{t}");
                    let mut r = get("/");
                    r.body = Bytes::from_static(b"{}");
                    let Ok(Decision::Continue(out)) = p.on_request(&ctx(&tenant), r).result else {
                        panic!()
                    };
                    assert_eq!(out.headers, vec![("x-tenant".to_string(), tenant.clone())]);
                    assert_eq!(
                        serde_json::from_slice::<Value>(&out.body).unwrap(),
                        json!({"tenant": tenant})
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn lua_reports_the_peak_heap_not_the_final_one() {
    let p = lua("function on_request() local t = {} for i = 1, 2e5 do t[i] = i end t = nil end");
    let inv = p.on_request(&ctx("t"), get("/"));
    assert!(inv.result.is_ok());
    assert!(
        inv.stats.memory_peak > 1 << 20,
        "peak {}",
        inv.stats.memory_peak
    );
    assert!(
        inv.stats.fuel > 100_000,
        "one interrupt per loop iteration at least"
    );
}

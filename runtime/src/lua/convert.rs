//! Conversions between the host's values and Lua values.
//!
//! Everything a script returns is read with raw accesses only (no `__index`,
//! `__tostring` or other metamethods run on the host's path) and is bounded in depth,
//! entry count and bytes, so a cyclic, very deep or huge table is an error, never a
//! hang or a stack overflow (catalogue item 22).

use mlua::{Lua, LuaString, Table, Value};
use serde_json::{Map, Number, Value as Json};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::{Headers, head_too_large};

/// The deepest table a script may hand back (a cycle hits this too).
pub(crate) const MAX_DEPTH: usize = 128;
/// The most table entries a script may hand back in one value.
pub(crate) const MAX_ENTRIES: usize = 1_000_000;

/// JSON to Lua. Arrays get the array metatable so they convert back as arrays; `null`
/// becomes `palisade.null` (mlua's `NULL` light userdata) so keys are not lost.
pub(crate) fn json_to_lua(lua: &Lua, value: &Json) -> mlua::Result<Value> {
    Ok(match value {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            t.set_metatable(Some(array_metatable(lua)?))?;
            Value::Table(t)
        }
        Json::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                t.raw_set(k.as_str(), json_to_lua(lua, v)?)?;
            }
            Value::Table(t)
        }
    })
}

const ARRAY_MT: &str = "palisade.array_mt";

/// The metatable that marks a table as a JSON array (so `[]` survives the round trip).
/// One per VM, created on first use, read-only.
pub(crate) fn array_metatable(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(t) = lua.named_registry_value::<Table>(ARRAY_MT) {
        return Ok(t);
    }
    let t = lua.create_table()?;
    t.raw_set("__type", "array")?;
    t.set_readonly(true);
    lua.set_named_registry_value(ARRAY_MT, t.clone())?;
    Ok(t)
}

/// Bounds shared by one conversion.
pub(crate) struct Budget {
    entries: usize,
    bytes: u64,
    max_bytes: u64,
}

impl Budget {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Budget {
            entries: 0,
            bytes: 0,
            max_bytes,
        }
    }

    fn entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(Error::InvalidOutput(format!(
                "returned table has more than {MAX_ENTRIES} entries"
            )));
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<()> {
        self.bytes += n as u64;
        if self.bytes > self.max_bytes {
            return Err(Error::OutputTooLarge {
                size: self.bytes,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// Lua to JSON, bounded.
pub(crate) fn lua_to_json(
    lua: &Lua,
    value: &Value,
    budget: &mut Budget,
    depth: usize,
) -> Result<Json> {
    if depth > MAX_DEPTH {
        return Err(Error::InvalidOutput(format!(
            "returned table is nested deeper than {MAX_DEPTH} levels (or is cyclic)"
        )));
    }
    budget.entry()?;
    Ok(match value {
        Value::Nil => Json::Null,
        Value::LightUserData(u) if u.0.is_null() => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Number(n) => number(*n)?,
        Value::String(s) => {
            let s = s
                .to_str()
                .map_err(|_| Error::InvalidOutput("a returned string is not UTF-8".into()))?;
            budget.bytes(s.len())?;
            Json::String(s.to_string())
        }
        Value::Table(t) => table_to_json(lua, t, budget, depth)?,
        other => {
            return Err(Error::InvalidOutput(format!(
                "a {} cannot be converted to JSON",
                other.type_name()
            )));
        }
    })
}

fn number(n: f64) -> Result<Json> {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        return Ok(Json::from(n as i64));
    }
    Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| Error::InvalidOutput("a returned number is NaN or infinite".into()))
}

fn table_to_json(lua: &Lua, t: &Table, budget: &mut Budget, depth: usize) -> Result<Json> {
    let array_mt = array_metatable(lua).map_err(script)?;
    let is_array_mt = t.metatable().is_some_and(|mt| mt == array_mt);
    let len = t.raw_len();
    let mut keys = 0usize;
    let mut pairs = Vec::new();
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair.map_err(script)?;
        keys += 1;
        budget.entry()?;
        pairs.push((k, v));
    }
    if is_array_mt || (len > 0 && keys == len) {
        let mut items = vec![Json::Null; len];
        for (k, v) in pairs {
            let i = match k {
                Value::Integer(i) => i as usize,
                Value::Number(n) if n.fract() == 0.0 => n as usize,
                _ => {
                    return Err(Error::InvalidOutput(
                        "an array has a non-integer key".into(),
                    ));
                }
            };
            if i == 0 || i > len {
                return Err(Error::InvalidOutput(
                    "an array has a key outside 1..#t".into(),
                ));
            }
            items[i - 1] = lua_to_json(lua, &v, budget, depth + 1)?;
        }
        return Ok(Json::Array(items));
    }
    let mut map = Map::new();
    for (k, v) in pairs {
        let key = match &k {
            Value::String(s) => s
                .to_str()
                .map_err(|_| Error::InvalidOutput("an object key is not UTF-8".into()))?
                .to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(Error::InvalidOutput(format!(
                    "an object key is a {}",
                    other.type_name()
                )));
            }
        };
        budget.bytes(key.len())?;
        map.insert(key, lua_to_json(lua, &v, budget, depth + 1)?);
    }
    Ok(Json::Object(map))
}

/// Headers to Lua: lower-case names; a repeated name maps to an array of values.
pub(crate) fn headers_to_lua(lua: &Lua, headers: &Headers) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match t.raw_get::<Value>(name.as_str())? {
            Value::Nil => t.raw_set(name, value.as_str())?,
            Value::String(first) => {
                let list = lua.create_sequence_from([first, lua.create_string(value)?])?;
                t.raw_set(name, list)?;
            }
            Value::Table(list) => list.raw_push(value.as_str())?,
            _ => {}
        }
    }
    Ok(t)
}

/// Headers from Lua: a map of name to string or array of strings, or an array of
/// `{name, value}` pairs. Read raw, and refused with [`Error::HeadTooLarge`] as soon as
/// the next header would pass the head caps, before its strings are copied.
pub(crate) fn headers_from_lua(value: &Value, limits: &Limits) -> Result<Headers> {
    let mut out = Headers::new();
    let t = match value {
        Value::Nil => return Ok(out),
        Value::Table(t) => t,
        other => {
            return Err(Error::InvalidOutput(format!(
                "`headers` is a {}",
                other.type_name()
            )));
        }
    };
    let mut budget = Budget::new(limits.head_limit());
    let mut bytes = 0u64;
    let mut push = |out: &mut Headers, name: &LuaString, value: &LuaString| -> Result<()> {
        bytes += (name.as_bytes().len() + value.as_bytes().len()) as u64;
        if out.len() >= limits.header_limit() || bytes > limits.head_limit() {
            return Err(head_too_large(out.len() + 1, bytes, limits));
        }
        out.push((lua_str(name)?, lua_str(value)?));
        Ok(())
    };
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair.map_err(script)?;
        budget.entry()?;
        match (k, v) {
            (Value::String(name), Value::String(value)) => push(&mut out, &name, &value)?,
            (Value::String(name), Value::Table(values)) => {
                for value in values.sequence_values::<Value>() {
                    budget.entry()?;
                    match value.map_err(script)? {
                        Value::String(v) => push(&mut out, &name, &v)?,
                        other => {
                            let name = name.as_bytes();
                            let name = String::from_utf8_lossy(&name[..name.len().min(64)]);
                            return Err(Error::InvalidOutput(format!(
                                "a value of header `{}` is a {}",
                                crate::message::one_line(&name, 64),
                                other.type_name()
                            )));
                        }
                    }
                }
            }
            (Value::Integer(_), Value::Table(pair)) => {
                let name: Value = pair.raw_get(1).map_err(script)?;
                let value: Value = pair.raw_get(2).map_err(script)?;
                match (name, value) {
                    (Value::String(n), Value::String(v)) => push(&mut out, &n, &v)?,
                    _ => {
                        return Err(Error::InvalidOutput(
                            "a header pair must be {name, value} strings".into(),
                        ));
                    }
                }
            }
            (_, v) => {
                return Err(Error::InvalidOutput(format!(
                    "a header value is a {}",
                    v.type_name()
                )));
            }
        }
    }
    Ok(out)
}

fn lua_str(s: &LuaString) -> Result<String> {
    s.to_str()
        .map(|s| s.to_string())
        .map_err(|_| Error::InvalidOutput("a returned string is not UTF-8".into()))
}

pub(crate) fn script(e: mlua::Error) -> Error {
    Error::Script(crate::message::one_line(&e.to_string(), 1_024))
}

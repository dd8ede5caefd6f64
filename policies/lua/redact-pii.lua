-- redact-pii (Lua): the same detectors, modes, config keys and outputs as
-- policies/redact-pii (the Wasm policy), written with plain scanners instead of
-- regular expressions. Config:
--   detectors = all | none | comma list of card,iban,aadhaar,ssn,pan,email,phone
--   mode      = mask | hash | remove | encrypt | encrypt-deterministic
--               (hash needs hash_key; encrypt: rules only, the route grants field_encryption)
--   paths     = JSON array of simple JSONPaths: $.a.b, $.a[0], $.a[*].b
--   phases    = request | response | both
-- Look-alikes that fail their checksum stay. Values are never logged.

local ORDER = {"card", "iban", "aadhaar", "ssn", "pan", "email", "phone"}

local byte, sub, find, format = string.byte, string.sub, string.find, string.format

local function is_digit(c) return c ~= nil and c >= 48 and c <= 57 end
local function is_upper(c) return c ~= nil and c >= 65 and c <= 90 end
local function is_alpha(c) return c ~= nil and ((c >= 65 and c <= 90) or (c >= 97 and c <= 122)) end
local function is_word(c) return c ~= nil and (is_digit(c) or is_alpha(c) or c == 95) end

-- A word boundary before position i / after position j (ASCII word characters).
local function boundary_before(s, i) return not is_word(byte(s, i - 1)) end
local function boundary_after(s, j) return not is_word(byte(s, j + 1)) end

local function compact(s) return (string.gsub(s, "[ %-]", "")) end

local function luhn(d)
  local sum, n = 0, #d
  for i = n, 1, -1 do
    local v = byte(d, i) - 48
    if (n - i) % 2 == 1 then v = v * 2; if v > 9 then v = v - 9 end end
    sum = sum + v
  end
  return sum % 10 == 0
end

local function iban_ok(s)
  if #s < 15 or #s > 34 then return false end
  local moved = sub(s, 5) .. sub(s, 1, 4)
  local rem = 0
  for i = 1, #moved do
    local c = byte(moved, i)
    if is_digit(c) then rem = (rem * 10 + (c - 48)) % 97
    elseif is_upper(c) then rem = (rem * 100 + (c - 55)) % 97
    else return false end
  end
  return rem == 1
end

local VD = {
  {0,1,2,3,4,5,6,7,8,9},{1,2,3,4,0,6,7,8,9,5},{2,3,4,0,1,7,8,9,5,6},{3,4,0,1,2,8,9,5,6,7},
  {4,0,1,2,3,9,5,6,7,8},{5,9,8,7,6,0,4,3,2,1},{6,5,9,8,7,1,0,4,3,2},{7,6,5,9,8,2,1,0,4,3},
  {8,7,6,5,9,3,2,1,0,4},{9,8,7,6,5,4,3,2,1,0},
}
local VP = {
  {0,1,2,3,4,5,6,7,8,9},{1,5,7,6,2,8,3,0,9,4},{5,8,0,3,7,9,6,1,4,2},{8,9,1,6,0,4,3,5,2,7},
  {9,4,5,3,1,2,6,8,7,0},{4,2,8,6,5,7,3,9,0,1},{2,7,9,3,8,0,6,4,1,5},{7,0,4,6,9,1,3,2,5,8},
}
local function verhoeff(d)
  local c, n = 0, #d
  for i = n, 1, -1 do
    local digit = byte(d, i) - 48
    c = VD[c + 1][VP[((n - i) % 8) + 1][digit + 1] + 1]
  end
  return c == 0
end

-- Greedy run of items (one optional separator, then one item char) after a fixed
-- head; returns the longest end with count in [min, max] that sits on a boundary.
local function run_end(s, i, head_len, item, seps, min, max)
  local ends, count, j = {}, 0, i + head_len - 1
  while count < max do
    local c = byte(s, j + 1)
    if item(c) then
      j = j + 1
    elseif c ~= nil and find(seps, string.char(c), 1, true) and item(byte(s, j + 2)) then
      j = j + 2
    else
      break
    end
    count = count + 1
    ends[count] = j
  end
  for k = math.min(count, max), min, -1 do
    if ends[k] and boundary_after(s, ends[k]) then return ends[k] end
  end
  return nil
end

local function fixed(s, i, pattern)
  local a, b = find(s, pattern, i)
  if a == i and boundary_after(s, b) then return b end
  return nil
end

-- Each detector: where a candidate can start (a pattern that `find` jumps to, so the
-- scan skips everything else in C), at position i the end of a candidate match (or nil),
-- and its check.
local DETECT = {
  card = {
    start = "%d",
    at = function(s, i)
      if not (is_digit(byte(s, i)) and boundary_before(s, i)) then return nil end
      return run_end(s, i, 1, is_digit, " -", 12, 18)
    end,
    ok = function(m) local d = compact(m); return #d >= 13 and #d <= 19 and luhn(d) end,
  },
  iban = {
    start = "%u%u%d%d",
    at = function(s, i)
      if not (boundary_before(s, i) and is_upper(byte(s, i)) and is_upper(byte(s, i + 1))
              and is_digit(byte(s, i + 2)) and is_digit(byte(s, i + 3))) then return nil end
      return run_end(s, i, 4, function(c) return is_upper(c) or is_digit(c) end, " ", 11, 30)
    end,
    ok = function(m) return iban_ok(compact(m)) end,
  },
  aadhaar = {
    start = "[2-9]",
    at = function(s, i)
      if not boundary_before(s, i) then return nil end
      return fixed(s, i, "^[2-9]%d%d%d ?%d%d%d%d ?%d%d%d%d", i)
    end,
    ok = function(m) local d = compact(m); return #d == 12 and verhoeff(d) end,
  },
  ssn = {
    start = "%d%d%d%-%d%d%-",
    at = function(s, i)
      if not boundary_before(s, i) then return nil end
      return fixed(s, i, "^%d%d%d%-%d%d%-%d%d%d%d")
    end,
    ok = function(m)
      local area, group, serial = sub(m, 1, 3), sub(m, 5, 6), sub(m, 8, 11)
      return area ~= "000" and area ~= "666" and sub(area, 1, 1) ~= "9" and group ~= "00" and serial ~= "0000"
    end,
  },
  pan = {
    start = "%u%u%u[ABCFGHLJPTE]%u%d",
    at = function(s, i)
      if not boundary_before(s, i) then return nil end
      return fixed(s, i, "^%u%u%u[ABCFGHLJPTE]%u%d%d%d%d%u")
    end,
    ok = function() return true end,
  },
  phone = {
    start = "%+[1-9]",
    at = function(s, i)
      if byte(s, i) ~= 43 then return nil end -- '+'
      local c = byte(s, i + 1)
      if not (is_digit(c) and c ~= 48) then return nil end
      return run_end(s, i, 2, is_digit, "", 7, 14)
    end,
    ok = function() return true end,
  },
}

local function local_char(c) return is_word(c) or c == 46 or c == 37 or c == 43 or c == 45 end
local function domain_char(c) return is_digit(c) or is_alpha(c) or c == 45 or c == 46 end

local function valid_domain(d)
  if sub(d, -1) == "." then return false end
  local labels = {}
  for label in string.gmatch(d .. ".", "([^.]*)%.") do
    if label == "" then return false end
    table.insert(labels, label)
  end
  if #labels < 2 then return false end
  local tld = labels[#labels]
  return #tld >= 2 and not find(tld, "[^%a]")
end

-- Emails: every '@' with a local part to its left and the longest valid domain to its right.
local function email_matches(s)
  local out, from = {}, 1
  while true do
    local at = find(s, "@", from, true)
    if not at then break end
    local start = at
    while start > from and local_char(byte(s, start - 1)) do start = start - 1 end
    while start < at and not is_word(byte(s, start)) do start = start + 1 end
    local stop = at
    while domain_char(byte(s, stop + 1)) do stop = stop + 1 end
    local found = nil
    if start < at then
      for e = stop, at + 1, -1 do
        if boundary_after(s, e) and valid_domain(sub(s, at + 1, e)) then found = e; break end
      end
    end
    if found then
      table.insert(out, {start, found})
      from = found + 1
    else
      from = at + 1
    end
  end
  return out
end

local function matches(s, kind)
  if kind == "email" then return email_matches(s) end
  local det, out, i = DETECT[kind], {}, 1
  while true do
    i = find(s, det.start, i)
    if not i then break end
    local e = det.at(s, i)
    if e then
      table.insert(out, {i, e})
      i = e + 1
    else
      i = i + 1
    end
  end
  return out
end

local function confirm(kind, m)
  if kind == "email" then return true end
  return DETECT[kind].ok(m)
end

-- Replaces confirmed findings, kind after kind. Returns the new text or nil.
-- Every detector needs a digit or an '@': text with neither is clean.
local function redact_text(text, kinds, replace)
  if not find(text, "[%d@]") then return nil end
  local current, changed = text, false
  for _, kind in ipairs(kinds) do
    local parts, last, hit = {}, 1, false
    for _, m in ipairs(matches(current, kind)) do
      local value = sub(current, m[1], m[2])
      if confirm(kind, value) then
        hit = true
        table.insert(parts, sub(current, last, m[1] - 1))
        table.insert(parts, replace(kind, value))
        last = m[2] + 1
      end
    end
    if hit then
      table.insert(parts, sub(current, last))
      current = table.concat(parts)
      changed = true
    end
  end
  if changed then return current end
  return nil
end

local function settings(ctx)
  local cfg = ctx.config
  local kinds = {}
  local detectors = cfg.detectors or "all"
  if detectors == "all" then
    kinds = ORDER
  elseif detectors ~= "none" and detectors ~= "" then
    local wanted = {}
    for name in string.gmatch(detectors, "[^,]+") do
      name = (string.gsub(name, "^%s*(.-)%s*$", "%1"))
      if DETECT[name] == nil and name ~= "email" then error("unknown detector `" .. name .. "`") end
      wanted[name] = true
    end
    for _, k in ipairs(ORDER) do if wanted[k] then table.insert(kinds, k) end end
  end
  local mode = cfg.mode or "mask"
  if mode ~= "mask" and mode ~= "hash" and mode ~= "remove" and mode ~= "encrypt"
      and mode ~= "encrypt-deterministic" then
    error("unknown mode `" .. mode .. "` (mask, hash, remove, encrypt, encrypt-deterministic)")
  end
  if mode == "hash" and (cfg.hash_key == nil or cfg.hash_key == "") then error("mode `hash` needs `hash_key`") end
  local phases = cfg.phases or "both"
  if phases ~= "both" and phases ~= "request" and phases ~= "response" then
    error("unknown phases `" .. phases .. "` (request, response, both)")
  end
  local paths = {}
  local p = cfg.paths
  if p ~= nil and p ~= "" then
    if sub(p, 1, 1) == "[" then paths = palisade.json_decode(p) else paths = {p} end
  end
  return {kinds = kinds, mode = mode, key = cfg.hash_key, phases = phases, paths = paths}
end

local function replacement(st, tag, value)
  if st.mode == "hash" then
    return format("[%s:%s]", tag or "hash", sub(palisade.hmac_sha256(st.key, value), 1, 16))
  end
  if tag then return "[REDACTED:" .. tag .. "]" end
  return "[REDACTED]"
end

local function name_path(path, key)
  local escaped = string.gsub(key, "[\\']", function(c) return "\\" .. c end)
  escaped = string.gsub(escaped, "%c", function(c) return format("\\u%04x", byte(c)) end)
  return path .. "['" .. escaped .. "']"
end

local function is_array(t) return getmetatable(t) == palisade.array_mt end

local function number_text(n)
  if n == math.floor(n) and math.abs(n) < 2^53 then return format("%d", n) end
  return tostring(n)
end

-- A value's path is built only when something in it is redacted: `walk` carries the
-- parent's node ({up = node, key = k}; the root's node has no `up`) and the key.
local function step_text(key)
  if type(key) == "number" then return "[" .. key .. "]" end
  return name_path("", key)
end

local function node_path(node)
  if node.up == nil then return "$" end
  return node_path(node.up) .. step_text(node.key)
end

-- Applies detectors to every string and number; returns true when the value must go.
local function walk(st, value, parent, key, found)
  local t = type(value)
  if t == "string" or t == "number" then
    local text = t == "number" and number_text(value) or value
    local out = redact_text(text, st.kinds, function(kind, v) return replacement(st, kind, v) end)
    if out == nil then return false, value end
    table.insert(found, parent == nil and "$" or node_path(parent) .. step_text(key))
    if st.mode == "remove" then return true, value end
    return false, out
  elseif t == "table" then
    local node = parent == nil and {} or {up = parent, key = key}
    if is_array(value) then
      local kept, removed = {}, false
      for i = 1, #value do
        local remove, new = walk(st, value[i], node, i - 1, found)
        if remove then removed = true else table.insert(kept, new) end
        value[i] = new
      end
      if removed then
        for i = #value, 1, -1 do value[i] = nil end
        for i, v in ipairs(kept) do value[i] = v end
      end
    else
      local keys = {}
      for k in pairs(value) do table.insert(keys, k) end
      table.sort(keys)
      -- Keys are data too (`{"by_ssn": {"219-09-9999": ...}}`): a key holding personal
      -- data is replaced like a value (its entry removed in remove mode), recorded as
      -- `[*]`; colliding replacements get `#2`, `#3`...
      local detected, changed = {}, false
      for _, k in ipairs(keys) do
        detected[k] = redact_text(k, st.kinds, function(kind, v) return replacement(st, kind, v) end)
        if detected[k] ~= nil then changed = true end
      end
      if changed then
        -- A replacement never takes the name of a key that stays (no value is lost).
        local taken, used, renamed = {}, {}, {}
        for _, k in ipairs(keys) do
          if detected[k] == nil then used[k] = true end
        end
        for _, k in ipairs(keys) do
          local out = detected[k]
          if out ~= nil then
            table.insert(found, node_path(node) .. "[*]")
            local item = value[k]
            value[k] = nil
            if st.mode ~= "remove" then
              local n, name = taken[out] or 0, nil
              repeat
                n = n + 1
                name = n == 1 and out or (out .. "#" .. n)
              until not used[name]
              taken[out] = n
              used[name] = true
              table.insert(renamed, {name, item})
            end
          end
        end
        for _, kv in ipairs(renamed) do value[kv[1]] = kv[2] end
        keys = {}
        for k in pairs(value) do table.insert(keys, k) end
        table.sort(keys)
      end
      for _, k in ipairs(keys) do
        local remove, new = walk(st, value[k], node, k, found)
        if remove then value[k] = nil else value[k] = new end
      end
    end
  end
  return false, value
end

-- Simple JSONPaths: $.a.b, $.a[0], $.a[*].b. Returns {parent, key, path} triples.
local function locate(doc, expr)
  if sub(expr, 1, 1) ~= "$" then error("invalid JSONPath `" .. expr .. "`") end
  local steps, rest = {}, sub(expr, 2)
  while rest ~= "" do
    local name, after = string.match(rest, "^%.([%a_][%w_]*)(.*)$")
    if name then table.insert(steps, name); rest = after
    else
      local idx, after2 = string.match(rest, "^%[(%*)%](.*)$")
      if not idx then idx, after2 = string.match(rest, "^%[(%d+)%](.*)$") end
      if not idx then error("invalid JSONPath `" .. expr .. "` (the Lua policy takes $.a.b, [n] and [*])") end
      table.insert(steps, idx == "*" and {any = true} or {index = tonumber(idx)})
      rest = after2
    end
  end
  local nodes = {{value = doc, path = "$"}}
  local located = {}
  for s, step in ipairs(steps) do
    local nextn = {}
    for _, node in ipairs(nodes) do
      local v = node.value
      if type(v) == "table" then
        local function visit(key, child_path)
          if v[key] ~= nil then
            if s == #steps then table.insert(located, {parent = v, key = key, path = child_path})
            else table.insert(nextn, {value = v[key], path = child_path}) end
          end
        end
        if type(step) == "string" and not is_array(v) then
          visit(step, name_path(node.path, step))
        elseif type(step) == "table" and is_array(v) then
          if step.any then
            for i = 1, #v do visit(i, node.path .. "[" .. (i - 1) .. "]") end
          else
            visit(step.index + 1, node.path .. "[" .. step.index .. "]")
          end
        elseif type(step) == "table" and step.any then
          local keys = {}
          for k in pairs(v) do table.insert(keys, k) end
          table.sort(keys)
          for _, k in ipairs(keys) do visit(k, name_path(node.path, k)) end
        end
      end
    end
    nodes = nextn
  end
  return located
end

local function redact_json(st, doc)
  local found = {}
  local located = {}
  for _, expr in ipairs(st.paths) do
    for _, l in ipairs(locate(doc, expr)) do table.insert(located, l) end
  end
  -- Deepest and last first, so removing array elements does not shift later ones.
  table.sort(located, function(a, b) return a.path > b.path end)
  for _, l in ipairs(located) do
    if st.mode == "remove" then
      if is_array(l.parent) then table.remove(l.parent, l.key) else l.parent[l.key] = nil end
    elseif st.mode == "encrypt" or st.mode == "encrypt-deterministic" then
      -- Sealed by the host with the tenant's data key; an error (no grant) fails the call.
      l.parent[l.key] = palisade.seal(l.path, l.parent[l.key],
        st.mode == "encrypt-deterministic" and "deterministic" or nil)
    else
      local v = l.parent[l.key]
      local text = type(v) == "string" and v or palisade.json_encode(v)
      l.parent[l.key] = replacement(st, nil, text)
    end
    table.insert(found, l.path)
  end
  if #st.kinds > 0 then
    local remove, new = walk(st, doc, nil, nil, found)
    -- A document that is itself the personal data cannot be removed: it becomes null.
    if remove then doc = palisade.null else doc = new end
  end
  return doc, found
end

local function redact(msg, ctx, phase)
  local st = settings(ctx)
  if st.phases ~= "both" and st.phases ~= phase then return nil end
  local raw = msg.raw_body
  if not find(raw, "%S") then return nil end
  local doc = msg.body
  local found
  if doc ~= nil and raw ~= "null" then
    if type(doc) ~= "table" then doc = palisade.json_decode(raw) end
    doc, found = redact_json(st, doc)
    if #found == 0 then return nil end
    msg.body = doc
  else
    if utf8.len(raw) == nil then error("body is neither JSON nor UTF-8 text") end
    local out = redact_text(raw, st.kinds, function(kind, v) return replacement(st, kind, v) end)
    if out == nil then return nil end
    msg.raw_body = out
    found = {"$"}
  end
  for _, p in ipairs(found) do palisade.redacted(p) end
  palisade.log("info", format("redacted %d value(s)", #found))
  return msg
end

function on_request(req, ctx) return redact(req, ctx, "request") end
function on_response(res, ctx) return redact(res, ctx, "response") end

-- reshape-json (Lua): the same `ops` and `phases` config as policies/reshape-json.
-- ops: JSON array of {"op": "rename"|"move", "from", "to"}, {"op": "drop", "path"},
-- {"op": "default"|"set", "path", "value"}; locations are JSON Pointers.

local function split(pointer)
  local parts = {}
  for part in string.gmatch(pointer, "/([^/]*)") do
    part = string.gsub(part, "~1", "/")
    part = string.gsub(part, "~0", "~")
    table.insert(parts, part)
  end
  return parts
end

local function is_array(t)
  return type(t) == "table" and getmetatable(t) == palisade.array_mt
end

local function key_of(container, part)
  if is_array(container) then
    local i = tonumber(part)
    if i == nil or i ~= math.floor(i) or i < 0 then return nil end
    return i + 1
  end
  return part
end

local function parent_of(doc, parts, create)
  local node = doc
  for i = 1, #parts - 1 do
    if type(node) ~= "table" then return nil end
    local k = key_of(node, parts[i])
    if k == nil then return nil end
    local child = node[k]
    if child == nil or (type(child) ~= "table" and create) then
      if not create then return nil end
      if is_array(node) then return nil end
      child = {}
      node[k] = child
    end
    node = child
  end
  return node
end

local function take(doc, pointer)
  local parts = split(pointer)
  if #parts == 0 then return nil end
  local parent = parent_of(doc, parts, false)
  if type(parent) ~= "table" then return nil end
  local k = key_of(parent, parts[#parts])
  if k == nil then return nil end
  local v = parent[k]
  if v == nil then return nil end
  if is_array(parent) then table.remove(parent, k) else parent[k] = nil end
  return v
end

local function exists(doc, pointer)
  local parts = split(pointer)
  local node = doc
  for _, part in ipairs(parts) do
    if type(node) ~= "table" then return false end
    local k = key_of(node, part)
    if k == nil or node[k] == nil then return false end
    node = node[k]
  end
  return true
end

local function put(doc, pointer, value)
  local parts = split(pointer)
  if #parts == 0 then return end
  local parent = parent_of(doc, parts, true)
  if type(parent) ~= "table" then return end
  local last = parts[#parts]
  if is_array(parent) then
    if last == "-" then table.insert(parent, value); return end
    local i = key_of(parent, last)
    if i and i <= #parent then parent[i] = value elseif i == #parent + 1 then table.insert(parent, value) end
  else
    parent[last] = value
  end
end

local function apply(ops, doc)
  for _, op in ipairs(ops) do
    local kind = op.op
    if kind == "rename" or kind == "move" then
      local v = take(doc, op.from)
      if v ~= nil then put(doc, op.to, v) end
    elseif kind == "drop" then
      take(doc, op.path)
    elseif kind == "default" then
      if not exists(doc, op.path) then put(doc, op.path, op.value) end
    elseif kind == "set" then
      put(doc, op.path, op.value)
    else
      error("invalid `ops`: unknown op `" .. tostring(kind) .. "`")
    end
  end
end

local function ops_of(ctx)
  local text = ctx.config.ops
  if text == nil then error("missing config `ops`") end
  return palisade.json_decode(text)
end

local function wants(ctx, phase)
  local p = ctx.config.phases or "both"
  if p == "both" then return true end
  if p == "request" or p == "response" then return p == phase end
  error("unknown phases `" .. p .. "`")
end

local function reshape(msg, ctx, phase)
  if not wants(ctx, phase) then return msg end
  local ops = ops_of(ctx)
  local doc = msg.body
  if type(doc) == "table" then
    apply(ops, doc)
    msg.body = doc
  end
  return msg
end

function on_request(req, ctx) return reshape(req, ctx, "request") end
function on_response(res, ctx) return reshape(res, ctx, "response") end

-- inject-headers (Lua): the same config keys and behaviour as policies/inject-headers.
--   <phase>.remove = comma-separated names; <phase>.set.<Name> = value; <phase>.add.<Name> = value
-- Removals first, then sets, then adds.

local function lower(s) return string.lower(s) end

local function apply(headers, config, phase)
  local remove = config[phase .. ".remove"]
  if remove then
    for name in string.gmatch(remove, "[^,]+") do
      name = lower((string.gsub(name, "^%s*(.-)%s*$", "%1")))
      if name ~= "" then headers[name] = nil end
    end
  end
  local sets, adds = {}, {}
  for key, value in pairs(config) do
    local set = string.match(key, "^" .. phase .. "%.set%.(.+)$")
    if set then table.insert(sets, {lower(set), value}) end
    local add = string.match(key, "^" .. phase .. "%.add%.(.+)$")
    if add then table.insert(adds, {lower(add), value}) end
  end
  for _, kv in ipairs(sets) do headers[kv[1]] = kv[2] end
  for _, kv in ipairs(adds) do
    local name, value = kv[1], kv[2]
    local old = headers[name]
    if old == nil then
      headers[name] = value
    elseif type(old) == "table" then
      table.insert(old, value)
    else
      headers[name] = {old, value}
    end
  end
end

function on_request(req, ctx)
  apply(req.headers, ctx.config, "request")
  return req
end

function on_response(res, ctx)
  apply(res.headers, ctx.config, "response")
  return res
end

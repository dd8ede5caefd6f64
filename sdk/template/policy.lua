-- A starting point: tags requests with a header from config and masks one JSON field
-- of responses. Replace with your own logic; `palisade test` runs cases.json against it.
-- The contract: docs/lua.md.

function on_request(req, ctx)
  req.headers["x-team"] = ctx.config.team or "unknown"
  return req
end

function on_response(res, ctx)
  local field = ctx.config.mask or "secret"
  local doc = res.body
  -- A JSON object that has the field (`body` is nil when the body is not JSON).
  if type(doc) ~= "table" or getmetatable(doc) == palisade.array_mt or doc[field] == nil then
    return nil -- unchanged
  end
  doc[field] = "***"
  palisade.redacted("$['" .. field .. "']")
  res.body = doc
  return res
end

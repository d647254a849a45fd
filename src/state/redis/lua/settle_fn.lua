-- Bill reservation `id` (in hash `held`) on hash `quota`: at most the amount
-- reserved, once. `d` is the reservation's done marker as the caller read it
-- (false when not yet settled): a settled reservation answers what it billed.
-- Returns what was billed, or -1 when the reservation is gone (expired).
-- The caller writes the done marker.
local function bill(quota, held, d, id, used)
  if d then return tonumber(string.match(d, '^(%d+)')) end
  local v = redis.call('HGET', held, id)
  if not v then return -1 end
  redis.call('HDEL', held, id)
  local billed = math.min(tonumber(string.match(v, '^(%d+):')), tonumber(used))
  if billed > 0 then redis.call('HINCRBY', quota, 'used', billed) end
  return billed
end

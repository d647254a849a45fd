local function settle(quota, held, done, id, used, ttl)
  local d = redis.call('GET', done)
  if d then return tonumber(string.match(d, '^(%d+)')) end
  local v = redis.call('HGET', held, id)
  if not v then return -1 end
  redis.call('HDEL', held, id)
  local billed = math.min(tonumber(string.match(v, '^(%d+):')), tonumber(used))
  if billed > 0 then redis.call('HINCRBY', quota, 'used', billed) end
  redis.call('SET', done, billed, 'PX', tonumber(ttl))
  return billed
end

local function log(list, seq, stats, json, ok, ms, keep)
  local id = redis.call('INCR', seq)
  redis.call('LPUSH', list, '{"id":' .. id .. string.sub(json, 8))
  redis.call('LTRIM', list, 0, tonumber(keep) - 1)
  redis.call('HINCRBY', stats, 'total', 1)
  if ok == '1' then redis.call('HINCRBY', stats, 'ok', 1) else redis.call('HINCRBY', stats, 'failed', 1) end
  redis.call('HINCRBY', stats, 'ms', tonumber(ms))
  return id
end

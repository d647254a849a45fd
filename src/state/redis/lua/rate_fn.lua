-- One sliding window on zset `key`: admit `cost` units under `limit` in
-- `window` ms, as members `<member>:1..cost` (a retry of an admitted call,
-- its reply lost, finds its own). Returns {allowed, held, reset_ms}.
local function rate_hit(key, window, limit, cost, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local held = redis.call('ZCARD', key)
  local allowed = 0
  if cost > 0 and redis.call('ZSCORE', key, member .. ':1') then
    allowed = 1
  elseif held + cost <= limit then
    for i = 1, cost do redis.call('ZADD', key, now, member .. ':' .. i) end
    redis.call('PEXPIRE', key, window)
    held = held + cost
    allowed = 1
  end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local reset = 0
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  return {allowed, held, reset}
end

-- The rate script, then (only when admitted) the reserve script (KEYS[1..3],
-- ARGV[1..7]); returns {allowed, held, reset, reserved}.
local function admit_reserve()
  local window = tonumber(ARGV[1]); local limit = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1])
  local allowed = 0
  local reserved = 0
  -- A retry (its first reply lost) finds its own admission and reservation.
  local again = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if again and redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then
    allowed = 1
    reserved = 1
  elseif again or count + 1 <= limit then
    if not again then
      redis.call('ZADD', KEYS[1], now, ARGV[3])
      redis.call('PEXPIRE', KEYS[1], window)
      count = count + 1
    end
    allowed = 1
    local used = tonumber(redis.call('HGET', KEYS[2], 'used') or '0')
    local held = 0
    local all = redis.call('HGETALL', KEYS[3])
    for i = 1, #all, 2 do
      local amount, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
      if tonumber(exp) <= now then redis.call('HDEL', KEYS[3], all[i]) else held = held + tonumber(amount) end
    end
    local amount = tonumber(ARGV[4])
    if used + held + amount <= tonumber(ARGV[5]) then
      redis.call('HSET', KEYS[3], ARGV[6], amount .. ':' .. (now + tonumber(ARGV[7])))
      reserved = 1
    end
  end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local reset = 0
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  return {allowed, count, reset, reserved}
end


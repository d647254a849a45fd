-- admit_reserve, then the model's gateway-wide ceiling, in one call (one
-- Redis, where the ceiling's key may join the key's). KEYS[4] the ceiling's
-- sliding window; ARGV[8] its window, ARGV[9] its limit, ARGV[10] the cost.
local admitted = admit_reserve()
if admitted[4] ~= 1 then
  return {admitted[1], admitted[2], admitted[3], 0, 0, 0, 0, 0}
end
local cwindow = tonumber(ARGV[8]); local climit = tonumber(ARGV[9]); local cost = tonumber(ARGV[10])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - cwindow)
local cheld = redis.call('ZCARD', KEYS[4])
local callowed = 0
if cost > 0 and redis.call('ZSCORE', KEYS[4], ARGV[3] .. ':1') then
  callowed = 1 -- a retry of a call that was admitted (its reply lost)
elseif cheld + cost <= climit then
  for i = 1, cost do redis.call('ZADD', KEYS[4], now, ARGV[3] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[4], cwindow)
  cheld = cheld + cost
  callowed = 1
end
local reserved = 1
if callowed == 0 then
  -- Refused by the ceiling: nothing stays held.
  redis.call('HDEL', KEYS[3], ARGV[6])
  reserved = 0
end
local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local creset = 0
if oldest[2] then creset = tonumber(oldest[2]) + cwindow - now end
return {admitted[1], admitted[2], admitted[3], reserved, 1, callowed, cheld, creset}

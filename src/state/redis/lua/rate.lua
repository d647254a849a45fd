local window = tonumber(ARGV[1]); local limit = tonumber(ARGV[2]); local cost = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local held = redis.call('ZCARD', KEYS[1])
local allowed = 0
if cost > 0 and redis.call('ZSCORE', KEYS[1], ARGV[4] .. ':1') then
  allowed = 1 -- a retry of a call that was admitted (its reply lost)
elseif held + cost <= limit then
  for i = 1, cost do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[1], window)
  held = held + cost
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, held, reset}
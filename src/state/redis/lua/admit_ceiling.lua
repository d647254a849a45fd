-- admit_reserve, then the model's gateway-wide ceiling, in one call (one
-- Redis, where the ceiling's key may join the key's). KEYS[4] the ceiling's
-- sliding window; ARGV[8] its window, ARGV[9] its limit, ARGV[10] the cost.
local admitted = admit_reserve()
if admitted[4] ~= 1 then
  return {admitted[1], admitted[2], admitted[3], 0, 0, 0, 0, 0}
end
local c = rate_hit(KEYS[4], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[3])
local reserved = 1
if c[1] ~= 1 then
  -- Refused by the ceiling: nothing stays held.
  redis.call('HDEL', KEYS[3], ARGV[6])
  reserved = 0
end
return {admitted[1], admitted[2], admitted[3], reserved, 1, c[1], c[2], c[3]}

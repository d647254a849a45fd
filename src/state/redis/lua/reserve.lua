if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 1 end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local held = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local amount, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if tonumber(exp) <= now then redis.call('HDEL', KEYS[2], all[i]) else held = held + tonumber(amount) end
end
local amount = tonumber(ARGV[1])
if used + held + amount > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], amount .. ':' .. (now + tonumber(ARGV[4])))
return 1
local mine = redis.call('HGET', KEYS[2], ARGV[4])
if mine then return tonumber(string.match(mine, '^(%d+):')) end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local held = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local amount, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if tonumber(exp) <= now then redis.call('HDEL', KEYS[2], all[i]) else held = held + tonumber(amount) end
end
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local need = math.max(0, tonumber(ARGV[2]) - old)
if used + held + need > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[2], ARGV[4], need .. ':' .. (now + tonumber(ARGV[5])))
return need
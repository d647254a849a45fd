local old = sum(KEYS[2])
redis.call('DEL', KEYS[2])
local new = 0
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  new = new + tonumber(ARGV[i + 1])
end
shift(new - old)
return tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
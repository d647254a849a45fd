local parts = sum(KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
shift(tonumber(ARGV[3]) - parts - old)
return 1
redis.call('HDEL', KEYS[2], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
shift(tonumber(ARGV[3]) - old)
if ARGV[4] ~= '' then redis.call('SADD', KEYS[4], ARGV[4]) end
return 1
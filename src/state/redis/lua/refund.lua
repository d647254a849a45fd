if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return 0 end
local u = redis.call('HINCRBY', KEYS[1], 'used', -tonumber(ARGV[1]))
if u < 0 then redis.call('HSET', KEYS[1], 'used', 0) end
return 1
local d = redis.call('GET', KEYS[3])
local billed = bill(KEYS[1], KEYS[2], d, ARGV[1], ARGV[2])
if not d and billed >= 0 then redis.call('SET', KEYS[3], billed, 'PX', tonumber(ARGV[3])) end
return billed

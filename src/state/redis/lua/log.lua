local prior = redis.call('GET', KEYS[4])
if prior then return tonumber(prior) end
local id = log(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[4], id, 'PX', 60000)
return id
local prior = redis.call('GET', KEYS[3])
if prior then return {prior} end
local id = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], id, 'PX', 60000)
local entry = '{"id":' .. id .. string.sub(ARGV[1], 8)
redis.call('LPUSH', KEYS[1], entry)
local keep = tonumber(ARGV[2])
local out = redis.call('LRANGE', KEYS[1], keep, -1)
redis.call('LTRIM', KEYS[1], 0, keep - 1)
table.insert(out, 1, tostring(id))
return out
local d = redis.call('GET', KEYS[3])
if d and string.match(d, ':(%d+)$') then return tonumber(string.match(d, ':(%d+)$')) end
local billed = settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
local id = log(KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
redis.call('SET', KEYS[3], math.max(billed, 0) .. ':' .. id, 'PX', tonumber(ARGV[3]))
return id
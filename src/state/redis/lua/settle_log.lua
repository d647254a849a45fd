local d = redis.call('GET', KEYS[3])
local logged = d and string.match(d, ':(%d+)$')
if logged then return tonumber(logged) end
local billed = bill(KEYS[1], KEYS[2], d, ARGV[1], ARGV[2])
local id = log(KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
redis.call('SET', KEYS[3], math.max(billed, 0) .. ':' .. id, 'PX', tonumber(ARGV[3]))
return id

local function shift(delta)
  if delta == 0 then return end
  local u = redis.call('HINCRBY', KEYS[1], 'used', string.format('%d', delta))
  if u < 0 then redis.call('HSET', KEYS[1], 'used', 0) end
end
local function sum(hash)
  local t = 0
  for _, v in ipairs(redis.call('HVALS', hash)) do t = t + tonumber(v) end
  return t
end

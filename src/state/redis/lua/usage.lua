local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local held = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local amount, exp = string.match(v, '^(%d+):(%d+)$')
  if tonumber(exp) > now then held = held + tonumber(amount) end
end
return {used, held}
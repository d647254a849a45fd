-- KEYS[1] the lease; ARGV holder. Only its holder gives it back.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1

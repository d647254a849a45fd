-- Forget a content nobody holds. KEYS content, this content's holds,
-- unreferenced; ARGV hash. Returns 1 when forgotten.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])

-- A holder lets go of a content. KEYS content, this content's holds, this
-- holder's held, unreferenced; ARGV hash, holder, now_ms. Returns the
-- holders left, or -1 when the holder held nothing.
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then
  return -1
end
redis.call('HDEL', KEYS[3], ARGV[1])
local left = redis.call('HLEN', KEYS[2])
if left == 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
end
return left

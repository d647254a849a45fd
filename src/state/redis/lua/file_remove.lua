-- A temporary file forgotten, and its path if the path is still its.
-- KEYS files, paths, expiry; ARGV id, path key. Returns 1, or 0 when gone.
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return gone

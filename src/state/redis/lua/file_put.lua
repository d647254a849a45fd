-- A temporary file recorded; it takes over its path. KEYS files, paths,
-- expiry; ARGV id, path key, record, expires_ms. Returns the record that
-- held the path (false when none, or when it is this one: a retry).
local old = redis.call('HGET', KEYS[2], ARGV[2])
local previous = false
if old and old ~= ARGV[1] then
  previous = redis.call('HGET', KEYS[1], old)
  redis.call('HDEL', KEYS[1], old)
  redis.call('ZREM', KEYS[3], old)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return previous

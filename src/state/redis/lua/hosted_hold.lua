-- A holder holds a content. KEYS content, this content's holds, this
-- holder's held, unreferenced; ARGV hash, holder, record. Returns 1 when
-- new, 0 when held already, -1 when the content is not recorded.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then
  return 0
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1

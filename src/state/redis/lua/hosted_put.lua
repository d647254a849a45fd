-- A file-host content recorded, unreferenced until held. KEYS content,
-- this content's holds, unreferenced; ARGV hash, record, now_ms.
-- Returns 1 when recorded now, 0 when it was already.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return 1

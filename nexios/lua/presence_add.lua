-- KEYS[1] the group's members (zset: channel id -> expiry ms), KEYS[2] their info (hash),
-- KEYS[3] the expiry index (zset: group .. '\255' .. channel id -> expiry ms).
-- ARGV[1] channel id, ARGV[2] info, ARGV[3] ttl ms, ARGV[4] group.
-- @include now_ms
local expires = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], expires, ARGV[4] .. '\255' .. ARGV[1])
return 1

-- KEYS as in presence_add. ARGV[1] channel id, ARGV[2] group.
-- Returns 1 when this call removed the member.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2] .. '\255' .. ARGV[1])
return removed

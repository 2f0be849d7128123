-- Extend this process's members, and add back those that vanished: Redis lost them, or
-- they were reaped as expired while this process stalled longer than the ttl.
-- KEYS[1] the expiry index, then per entry the group's members and info keys.
-- ARGV[1] ttl ms, then per entry: group, channel id, info.
-- Returns the positions (from 1) of the entries that were added back.
-- @include now_ms
local expires = now + tonumber(ARGV[1])
local added = {}
for i = 1, (#KEYS - 1) / 2 do
  local members, infos = KEYS[2 * i], KEYS[2 * i + 1]
  local group, id = ARGV[3 * i - 1], ARGV[3 * i]
  if redis.call('ZADD', members, expires, id) == 1 then
    redis.call('HSET', infos, id, ARGV[3 * i + 1])
    added[#added + 1] = i
  end
  redis.call('ZADD', KEYS[1], expires, group .. '\255' .. id)
end
return added

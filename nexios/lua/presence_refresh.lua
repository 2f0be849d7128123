-- Extend members that are still present; one that left (or was reaped) stays gone.
-- KEYS[1] the expiry index, then per entry the group's members key.
-- ARGV[1] ttl ms, then per entry: group, channel id.
-- @include now_ms
local expires = now + tonumber(ARGV[1])
for i = 1, #KEYS - 1 do
  local members, group, id = KEYS[i + 1], ARGV[2 * i], ARGV[2 * i + 1]
  if redis.call('ZSCORE', members, id) then
    redis.call('ZADD', members, expires, id)
    redis.call('ZADD', KEYS[1], expires, group .. '\255' .. id)
  end
end
return #KEYS - 1

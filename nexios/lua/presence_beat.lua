-- Defines beat(members, infos, index, expires, group, id, info): extend a member to
-- `expires`, or add it back when it vanished (Redis lost it, or it was reaped as expired
-- while its process stalled longer than the ttl), and index it. True when added back.
-- Included by presence_heartbeat and presence_heartbeat_nodes.
local function beat(members, infos, index, expires, group, id, info)
  local added = redis.call('ZADD', members, expires, id) == 1
  if added then redis.call('HSET', infos, id, info) end
  redis.call('ZADD', index, expires, group .. '\255' .. id)
  return added
end

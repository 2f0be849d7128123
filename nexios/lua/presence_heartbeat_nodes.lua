#!lua flags=allow-cross-slot-keys
-- The heartbeat on a Redis Cluster: one script per primary for entries of many slots (a
-- script per group would cost a round of Redis work and client time per member). The
-- keys span slots, so they are not declared: allow-cross-slot-keys lets a script use the
-- keys of every slot its node serves.
-- ARGV[1] ttl ms, then per entry: members key, info key, expiry index of its slot, group,
-- channel id, info. Returns {positions (from 1) of the entries added back, positions of
-- entries whose slot this node does not serve (the slot map changed): not touched}.
-- @include now_ms
-- @include presence_beat
local expires = now + tonumber(ARGV[1])
local added, moved = {}, {}
for i = 1, (#ARGV - 1) / 6 do
  local at = 6 * i - 4
  local here = redis.pcall('EXISTS', ARGV[at])
  if type(here) == 'table' then
    moved[#moved + 1] = i
  elseif beat(ARGV[at], ARGV[at + 1], ARGV[at + 2], expires, ARGV[at + 3], ARGV[at + 4],
              ARGV[at + 5]) then
    added[#added + 1] = i
  end
end
return {added, moved}

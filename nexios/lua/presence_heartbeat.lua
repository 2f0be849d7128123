-- Extend this process's members, and add back those that vanished (see presence_beat).
-- KEYS[1] the expiry index, then per entry the group's members and info keys.
-- ARGV[1] ttl ms, then per entry: group, channel id, info.
-- Returns the positions (from 1) of the entries that were added back.
-- @include now_ms
-- @include presence_beat
local expires = now + tonumber(ARGV[1])
local added = {}
for i = 1, (#KEYS - 1) / 2 do
  if beat(KEYS[2 * i], KEYS[2 * i + 1], KEYS[1], expires, ARGV[3 * i - 1], ARGV[3 * i],
          ARGV[3 * i + 1]) then
    added[#added + 1] = i
  end
end
return added

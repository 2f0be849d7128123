#!lua flags=allow-cross-slot-keys
-- Reaping on a Redis Cluster: one script per primary for the expiry indexes of many
-- slots (one per slot, see nexios._redis.KeySpace), not declared as keys because they
-- span slots (allow-cross-slot-keys). Each slot's reap is atomic, so each expired member
-- is returned by exactly one caller across all processes.
-- ARGV[1] at most this many index entries read in all, ARGV[2], ARGV[3] as in
-- presence_reap, then the indexes. Returns {1 if the limit was reached (call again),
-- {group, channel id, info, ...}, positions (from 1) of indexes this node does not serve}.
-- @include now_ms
-- @include presence_reap_index
local left = tonumber(ARGV[1])
local out, moved = {}, {}
for i = 4, #ARGV do
  local here = redis.pcall('EXISTS', ARGV[i])
  if type(here) == 'table' then
    moved[#moved + 1] = i - 3
  elseif here == 1 then
    left = left - reap(ARGV[i], left, ARGV[2], ARGV[3], out)
    if left <= 0 then return {1, out, moved} end
  end
end
return {0, out, moved}

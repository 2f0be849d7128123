-- KEYS[1] the group's members, KEYS[2] their info.
-- Returns {channel id, info, ...} of the unexpired members.
-- @include now_ms
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for start = 1, #ids, 500 do
  local chunk = {}
  for i = start, math.min(start + 499, #ids) do chunk[#chunk + 1] = ids[i] end
  local infos = redis.call('HMGET', KEYS[2], unpack(chunk))
  for i, id in ipairs(chunk) do
    out[#out + 1] = id
    out[#out + 1] = infos[i] or ''
  end
end
return out

-- Remove expired members and return them: {index entries read, {group, channel id,
-- info, ...}}; fewer entries read than asked for means nothing expired is left.
-- KEYS[1] the expiry index. ARGV[1] at most this many; a group's members key is
-- ARGV[2] .. group .. ARGV[3] .. ':p', its info key the same with ':pi'.
-- Only the index's expired range is read, so the work is proportional to what expired,
-- not to the number of groups. Atomic: each expired member is returned by exactly one
-- caller across all processes.
-- @include now_ms
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, entry in ipairs(expired) do
  redis.call('ZREM', KEYS[1], entry)
  local cut = string.find(entry, '\255', 1, true)
  local group, id = string.sub(entry, 1, (cut or 1) - 1), string.sub(entry, (cut or 0) + 1)
  local base = ARGV[2] .. group .. ARGV[3]
  local members, infos = base .. ':p', base .. ':pi'
  local score = cut and redis.call('ZSCORE', members, id)
  if score and tonumber(score) <= now then
    redis.call('ZREM', members, id)
    out[#out + 1] = group
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', infos, id) or ''
    redis.call('HDEL', infos, id)
  elseif score then
    -- refreshed since: keep it indexed under its new expiry
    redis.call('ZADD', KEYS[1], score, entry)
  end
end
return {#expired, out}

-- Defines reap(index, limit, head, tail, out): remove the expired members of one expiry
-- index (at most `limit` index entries), append {group, channel id, info} of each to
-- `out`, and return how many index entries were read (fewer than `limit`: none left).
-- A group's members key is head .. group .. tail .. ':p', its info key the same with
-- ':pi'. Only the expired range is read, so the work is proportional to what expired.
-- Included by presence_reap and presence_reap_nodes; needs `now` (now_ms).
local function reap(index, limit, head, tail, out)
  local expired = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, limit)
  for _, entry in ipairs(expired) do
    redis.call('ZREM', index, entry)
    local cut = string.find(entry, '\255', 1, true)
    local group, id = string.sub(entry, 1, (cut or 1) - 1), string.sub(entry, (cut or 0) + 1)
    local base = head .. group .. tail
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
      redis.call('ZADD', index, score, entry)
    end
  end
  return #expired
end

-- KEYS[1] meta hash, KEYS[2] stream. ARGV[1] max age ms (0: none), ARGV[2] since
-- (-1: none), ARGV[3] limit (-1: none), ARGV[4] page size, ARGV[5] the epoch the caller
-- expects ('' with ARGV[6] = '0': no expectation).
-- Returns {last_seq, first_seq (-1: none), epoch ('' : no numbering), {id, seq, kind,
-- data, ...} oldest first}. Without a numbering, or when the epoch differs, no entries.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return {0, -1, '', {}}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local lower = '-'
local max_age = tonumber(ARGV[1])
if max_age > 0 then
  -- @include now_ms
  lower = string.format('%d', now - max_age)
end
local first = -1
local oldest = redis.call('XRANGE', KEYS[2], lower, '+', 'COUNT', 1)
if #oldest > 0 then first = tonumber(oldest[1][2][2]) end
local since, limit, page = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if limit == 0 or (ARGV[6] == '1' and ARGV[5] ~= epoch) then
  return {last, first, epoch, {}}
end

-- newest first: the entries to return, in reverse
local picked = {}
if since < 0 then
  if limit > 0 then
    picked = redis.call('XREVRANGE', KEYS[2], '+', lower, 'COUNT', limit)
  else
    picked = redis.call('XREVRANGE', KEYS[2], '+', lower)
  end
else
  -- walk back page by page to the newest entry at or before `since`
  local upper = '+'
  while true do
    local batch = redis.call('XREVRANGE', KEYS[2], upper, lower, 'COUNT', page)
    local reached = false
    for _, entry in ipairs(batch) do
      if tonumber(entry[2][2]) <= since then
        reached = true
        break
      end
      picked[#picked + 1] = entry
    end
    if reached or #batch < page then break end
    upper = '(' .. batch[#batch][1]
  end
  -- keep the oldest `limit` of them
  if limit > 0 and #picked > limit then
    local kept = {}
    for i = #picked - limit + 1, #picked do kept[#kept + 1] = picked[i] end
    picked = kept
  end
end

local out = {}
for i = #picked, 1, -1 do
  local entry = picked[i]
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
  out[#out + 1] = entry[2][4]
  out[#out + 1] = entry[2][6]
end
return {last, first, epoch, out}

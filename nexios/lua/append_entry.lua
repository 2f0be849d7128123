-- Append one entry to a group's history; included by history_append and publish_saved.
-- KEYS[1] the group's meta hash {seq, epoch}, KEYS[2] its stream, KEYS[3] the
-- idempotency key. ARGV[1] kind, ARGV[2] data, ARGV[3] max entries, ARGV[4] max age ms
-- (0: no age bound), ARGV[5] a fresh epoch, used when the group has none, ARGV[6] the
-- idempotency window ms (0: no key), ARGV[7] the JSON-encoded seq field ('' for none):
-- the saved data then starts with it (nexios.history.base.stamped does the same).
-- ARGV[8] '1' on a Redis Cluster: a numbering belongs to the primary that made it (field
-- `node`, its CLUSTER MYID). Replication is asynchronous, so a replica promoted by a
-- failover may lack the last appends, whose seqs members already received: numbering on
-- would give those seqs to other messages. A numbering found on another node than the
-- one that made it therefore starts a new epoch (after a resharding too: rare, and safe).
-- Defines `seq`, `epoch`, `id` and `data` (what was saved). A duplicate returns
-- {1, seq, epoch, id} of the original entry at once.
-- Redis does not undo the writes of a script that fails half-way: everything that can
-- fail (a key of another type, a write refused for memory) comes before the first write,
-- so a failed append changes nothing.
-- @include now_ms
local meta, stream, idempotency = KEYS[1], KEYS[2], KEYS[3]
local window = tonumber(ARGV[6])
if window > 0 then
  local seen = redis.call('GET', idempotency)
  if seen then
    local seen_seq, seen_epoch, seen_id = string.match(seen, '^(%d+) (%S+) (%S+)$')
    return {1, tonumber(seen_seq), seen_epoch, seen_id}
  end
end
local node = ''
if ARGV[8] == '1' then node = redis.call('CLUSTER', 'MYID') end
local numbering = redis.call('HMGET', meta, 'epoch', 'seq', 'node')
local epoch, seq = numbering[1], tonumber(numbering[2] or '0') + 1
if not epoch or (node ~= '' and numbering[3] ~= node) then
  -- A new numbering: whatever the stream still holds belongs to one that was lost.
  epoch, seq = ARGV[5], 1
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch)
  if node ~= '' then redis.call('HSET', meta, 'node', node) end
end
local data = ARGV[2]
if ARGV[7] ~= '' then
  local head = '{' .. ARGV[7] .. ':' .. string.format('%d', seq)
  if data == '{}' then data = head .. '}' else data = head .. ',' .. string.sub(data, 2) end
end
local id = redis.call('XADD', stream, 'MAXLEN', '=', ARGV[3], '*',
                      'seq', seq, 'kind', ARGV[1], 'data', data)
redis.call('HSET', meta, 'seq', seq)
local max_age = tonumber(ARGV[4])
if max_age > 0 then
  -- never trim the entry just added, whatever the clock did
  local id_ms = tonumber(string.match(id, '^(%d+)'))
  redis.call('XTRIM', stream, 'MINID', string.format('%d', math.min(now - max_age, id_ms)))
  -- the numbering lives exactly as long as the entries: both go after max_age idle
  redis.call('PEXPIRE', stream, max_age)
  redis.call('PEXPIRE', meta, max_age)
end
if window > 0 then
  redis.call('SET', idempotency, seq .. ' ' .. epoch .. ' ' .. id, 'PX', window)
end

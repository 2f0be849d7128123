-- Append to history and publish in one step, so that publish order is seq order.
-- KEYS and ARGV[1..8] as in append_entry; ARGV[9] the publish command (PUBLISH, or the
-- sharded SPUBLISH on a cluster), ARGV[10] the group's pub/sub channel, ARGV[11] the wire
-- header up to the seq (nexios.layers.base.encode_wire writes the same bytes).
-- The published data is what was saved (with the seq field, when there is one).
-- Returns {duplicate (0/1), seq, epoch, id, receivers}; a duplicate publishes nothing.
-- @include append_entry
local function u64be(n)
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(bytes)
end
local wire = ARGV[11] .. u64be(seq) .. string.char(#epoch) .. epoch .. data
return {0, seq, epoch, id, redis.call(ARGV[9], ARGV[10], wire)}

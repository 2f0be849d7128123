-- Append to history and publish in one step, so that publish order is seq order.
-- KEYS and ARGV[1..7] as in append_entry; ARGV[8] the group's pub/sub channel, ARGV[9]
-- the wire header up to the seq (nexios.layers.base.encode_wire writes the same bytes).
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
local wire = ARGV[9] .. u64be(seq) .. string.char(#epoch) .. epoch .. data
return {0, seq, epoch, id, redis.call('PUBLISH', ARGV[8], wire)}

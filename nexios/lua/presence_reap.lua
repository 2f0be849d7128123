-- Remove expired members and return them: {index entries read, {group, channel id,
-- info, ...}}; fewer entries read than asked for means nothing expired is left.
-- KEYS[1] the expiry index. ARGV[1] at most this many; ARGV[2], ARGV[3] the head and
-- tail of a group's stem (see presence_reap_index). Atomic: each expired member is
-- returned by exactly one caller across all processes.
-- @include now_ms
-- @include presence_reap_index
local out = {}
local read = reap(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], out)
return {read, out}

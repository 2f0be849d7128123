-- KEYS and ARGV as in append_entry. Returns {duplicate (0/1), seq, epoch, id}.
-- @include append_entry
return {0, seq, epoch, id}

-- Take (or renew) a lease: KEYS[1] the lease, ARGV[1] the taker, ARGV[2] ms.
-- Returns 1 when the caller holds it now, 0 when someone else does.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1

-- Publish unless the idempotency key was used within its window.
-- KEYS[1] the idempotency key. ARGV[1] window ms, ARGV[2] channel, ARGV[3] wire message,
-- ARGV[4] the publish command (PUBLISH, or the sharded SPUBLISH on a cluster).
-- Returns {duplicate (0/1), receivers}.
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return {0, redis.call(ARGV[4], ARGV[2], ARGV[3])}
end
return {1, 0}

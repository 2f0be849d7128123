-- `now`: the Redis server's clock in Unix milliseconds. Every expiry is judged by this one
-- clock, so the processes' clocks never have to agree. replicate_commands() lets
-- Redis < 7 write after TIME (a no-op on 7+, where scripts replicate their effects).
redis.replicate_commands()
local server_time = redis.call('TIME')
local now = tonumber(server_time[1]) * 1000 + math.floor(tonumber(server_time[2]) / 1000)

-- Ferry's per-user connection slots across nodes (FERRY-RATE-3).
--
-- KEYS[1] the user's sessions: a sorted set of "<node id>/<session id>", scored by the Redis
--   time in ms at which each lease ends
-- ARGV[1] "take" (ARGV[2] the member, ARGV[3] the most sessions, ARGV[4] the lease in ms) or
--   "renew" (ARGV[2] the lease in ms, ARGV[3...] the members this node still holds)
--
-- Answers 1 when a slot is taken or leases renewed, 0 when the user holds every slot.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] == 'take' then
  local lease = tonumber(ARGV[4])
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
  end
  redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
  if redis.call('PTTL', KEYS[1]) < lease then
    redis.call('PEXPIRE', KEYS[1], lease)
  end
  return 1
end
local lease = tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
end
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1

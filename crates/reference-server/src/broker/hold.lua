-- Ferry's hold of one exclusive channel across nodes (FERRY-HOLD-1, FERRY-HOLD-2, FERRY-HOLD-4).
--
-- KEYS[1] the holder: a hash of session ("<node id>/<session id>"), user, fence and expires (Redis
--   time in ms until which the hold lasts unless its node refreshes it), expiring with it; after
--   a release, only released (the field that released it), for a lease
-- KEYS[2] the channel's last fence: a counter, never reset, so no fence is given twice; a
--   counter that is gone (a Redis that lost its data) starts again from Redis's clock in
--   microseconds, above every fence given before unless a million were given per second
-- ARGV[1] the operation, ARGV[2] the channel, ARGV[3] its pub/sub topic
-- and per operation, from ARGV[4]:
--   claim    field, user, asked fence ("" for none), "refuse" or "take_over", lease in ms
--            -> {"held"} or {"granted", fence[, displaced field, user, fence]}
--   release  field, lease in ms                     -> 1 if the session held the channel
--   refresh  field, fence, user, lease in ms        -> 1 if the session still holds it
--
-- An expired holder counts as none. A hold that passes to another session is published on the
-- topic as "take_over <old fence> <channel>", so that every node following the channel tells
-- its sessions.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function ms(value)
  return string.format('%d', value)
end

local function hold(field, user, fence, lease)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'session', field, 'user', user, 'fence', fence,
    'expires', ms(now + lease))
  redis.call('PEXPIRE', KEYS[1], ms(lease))
end

local record = redis.call('HMGET', KEYS[1], 'session', 'user', 'fence', 'expires', 'released')
local holder = record
if record[1] and (tonumber(record[4]) or 0) <= now then
  holder = {false, false, false, false}
end

local op = ARGV[1]

if op == 'claim' then
  local field, user, asked, mode, lease = ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
  if holder[1] then
    local own = asked ~= '' and tonumber(asked) == tonumber(holder[3]) and user == holder[2]
    if not own and mode == 'refuse' then
      return {'held'}
    end
  end
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], ms(tonumber(time[1]) * 1000000 + tonumber(time[2])))
  end
  local fence = ms(redis.call('INCR', KEYS[2]))
  hold(field, user, fence, lease)
  if holder[1] then
    redis.call('PUBLISH', ARGV[3], 'take_over ' .. holder[3] .. ' ' .. ARGV[2])
    return {'granted', fence, holder[1], holder[2], holder[3]}
  end
  return {'granted', fence}
end

if op == 'release' then
  if record[1] ~= ARGV[4] then
    return 0
  end
  -- Marked for a lease, so that a refresh of the hold sent before the release cannot take it
  -- back.
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'released', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if holder[1] then
    return 1
  end
  return 0
end

if op == 'refresh' then
  local field, fence, user, lease = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
  if holder[1] == field and holder[3] == fence then
    redis.call('HSET', KEYS[1], 'expires', ms(now + lease))
    redis.call('PEXPIRE', KEYS[1], ms(lease))
    return 1
  end
  if not holder[1] and record[5] ~= field and redis.call('GET', KEYS[2]) == fence then
    -- The hold lapsed (its node could not refresh it in time) and nobody held the channel
    -- since: it is still the newest, so it is taken back.
    hold(field, user, fence, lease)
    return 1
  end
  return 0
end

return redis.error_reply('unknown hold operation ' .. tostring(op))

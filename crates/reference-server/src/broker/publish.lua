-- Ferry's atomic publish (FERRY-DEDUP-1, FERRY-EVENT-1, FERRY-RESUME-3, FERRY-HOLD-3).
--
-- Runs after retain.lua, which defines retain() and clock().
--
-- KEYS[1] the channel's state hash (epoch, seq, last_ms)
-- KEYS[2] the channel's stream: one entry per event, id "<seq>-0", fields t (Redis ms), f (frame)
-- KEYS[3] the idempotency key's record: "<epoch> <seq> <message id>", expiring after the window
-- KEYS[4] the channel's holder (see hold.lua), read only for a publish under a fence
-- ARGV[1] a fresh epoch, used if the channel has none (new, or its state was lost)
-- ARGV[2] the event's message id
-- ARGV[3], ARGV[4], ARGV[5] the event frame around its epoch and its seq
-- ARGV[6] retention: events kept whatever their age
-- ARGV[7] retention: age in ms up to which events are kept whatever their number
-- ARGV[8] the dedup window in ms
-- ARGV[9] the channel's pub/sub topic
-- ARGV[10] the fence of the publishing session's hold (FERRY-HOLD-3), "" for a publish not
--   under a hold
--
-- Answers {"duplicate", record}, {"published", epoch, seq}, {"exhausted"} or {"not_holder"}
-- (the fence is not the current holder's: nothing is stored, and a repeated key is not
-- answered).

if ARGV[10] ~= '' then
  local holder = redis.call('HMGET', KEYS[4], 'fence', 'expires')
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if holder[1] ~= ARGV[10] or (tonumber(holder[2]) or 0) <= now_ms then
    return {'not_holder'}
  end
end

local original = redis.call('GET', KEYS[3])
if original then
  return {'duplicate', original}
end

local state = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'last_ms')
local epoch = state[1]
if not epoch then
  -- A stream without its state belongs to an epoch whose head is lost: start afresh.
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'last_ms', 0)
  state = {epoch, '0', '0'}
end
local head = tonumber(state[2]) or 0
if head >= 9007199254740991 then
  return {'exhausted'}
end

local now = clock(tonumber(state[3]) or 0)

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local seq_text = string.format('%d', seq)
redis.call('HSET', KEYS[1], 'last_ms', string.format('%d', now))
local frame = ARGV[3] .. epoch .. ARGV[4] .. seq_text .. ARGV[5]
redis.call('XADD', KEYS[2], seq_text .. '-0', 't', string.format('%d', now), 'f', frame)

retain(KEYS[2], seq, now, tonumber(ARGV[6]), tonumber(ARGV[7]))

redis.call('SET', KEYS[3], epoch .. ' ' .. seq_text .. ' ' .. ARGV[2], 'PX', ARGV[8])
redis.call('PUBLISH', ARGV[9], frame)
return {'published', epoch, seq_text}

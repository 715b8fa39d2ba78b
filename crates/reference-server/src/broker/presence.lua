-- Ferry's presence of one channel across nodes (FERRY-PRESENCE-1..4).
--
-- KEYS[1] the sessions present: a hash of "<node id>/<session id>" -> "p:<user>" (refreshed by
--   its node) or "l:<user>" (lapsed: its connection ended without leaving)
-- KEYS[2] when each present session leaves unless refreshed: a sorted set of the same fields,
--   scored by Redis time in ms
-- KEYS[3] the members: a hash of user -> number of its present sessions
-- KEYS[4] the members' info: a hash of user -> the info (JSON) of the session that made it a member
-- KEYS[5] the members in order: a sorted set of users, all scored 0, read with ZRANGEBYLEX
-- KEYS[6] the channel's state hash, KEYS[7] its stream (see publish.lua), for the head
-- ARGV[1] the operation, ARGV[2] the channel, ARGV[3] its pub/sub topic, ARGV[4] a fresh epoch
--   (used if the channel has none, as the read script does)
-- and per operation, from ARGV[5]:
--   join     field, user, info ("" for none), lease in ms     -> 1 if the user became a member
--   leave    field                                            -> 1 if the user stopped being one
--   lapse    field, leave_after in ms                         -> 1 if the session was present
--   refresh  lease in ms, fields...                           -> the fields no longer present
--   expire   most sessions to drop                            -> how many were dropped
--   members  after ("" for the first page), limit             -> {epoch, seq, more, user, sessions, info...}
--
-- Every operation first drops the sessions whose time has come, so nothing answered or
-- recorded counts an expired session. Each change of the members is published on the topic as
-- the presence frame sessions receive, with the channel's head when it was recorded.

-- The keys disappear this long after the last session's expiry if no node drops it first.
local GRACE_MS = 60000

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function ms(value)
  return string.format('%d', value)
end

-- A JSON string as serde_json writes it.
local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
local function escape(c)
  return escapes[c] or string.format('\\u%04x', string.byte(c))
end
local function json_string(text)
  return '"' .. (string.gsub(text, '[%z\1-\31"\\]', escape)) .. '"'
end

-- The channel's head, created as the read script creates it for a channel without state.
local head_epoch, head_seq
local function head()
  if head_epoch then
    return head_epoch, head_seq
  end
  local state = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
  if state[1] then
    head_epoch, head_seq = state[1], ms(tonumber(state[2]) or 0)
  else
    head_epoch, head_seq = ARGV[4], '0'
    redis.call('DEL', KEYS[7])
    redis.call('HSET', KEYS[6], 'epoch', head_epoch, 'seq', 0, 'last_ms', 0)
  end
  return head_epoch, head_seq
end

-- Publishes a presence event, its fields in the order the server's encoder writes them.
local function announce(change, user, info)
  local epoch, seq = head()
  local frame = '{"type":"presence","change":"' .. change .. '","channel":' .. json_string(ARGV[2])
  if info then
    frame = frame .. ',"info":' .. info
  end
  frame = frame .. ',"position":{"epoch":' .. json_string(epoch) .. ',"seq":' .. seq
    .. '},"user":' .. json_string(user) .. '}'
  redis.call('PUBLISH', ARGV[3], frame)
end

local function leave(field)
  local present = redis.call('HGET', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
  if not present then
    return 0
  end
  redis.call('HDEL', KEYS[1], field)
  local user = string.sub(present, 3)
  if redis.call('HINCRBY', KEYS[3], user, -1) > 0 then
    return 0
  end
  redis.call('HDEL', KEYS[3], user)
  redis.call('HDEL', KEYS[4], user)
  redis.call('ZREM', KEYS[5], user)
  announce('leave', user, nil)
  return 1
end

-- Drops up to `most` sessions whose time has come, earliest first.
local function expire(most)
  local due
  if most then
    due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, most)
  else
    due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  end
  for _, field in ipairs(due) do
    leave(field)
  end
  return #due
end

-- Lets the keys go once no session is present, and otherwise keeps them a grace after the last
-- expiry (for a channel whose every node stopped).
local function tidy()
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    return
  end
  local ttl = ms(math.max(tonumber(last[2]) - now, 0) + GRACE_MS)
  for i = 1, 5 do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end

local op = ARGV[1]

if op == 'expire' then
  local dropped = expire(tonumber(ARGV[5]))
  if dropped > 0 then
    tidy()
  end
  return dropped
end

local expired = expire(nil)

if op == 'join' then
  local field, user, info = ARGV[5], ARGV[6], ARGV[7]
  local joined = 0
  if redis.call('HEXISTS', KEYS[1], field) == 1 then
    -- Present already: stays so, and no longer lapses.
    local present = redis.call('HGET', KEYS[1], field)
    redis.call('HSET', KEYS[1], field, 'p:' .. string.sub(present, 3))
  else
    redis.call('HSET', KEYS[1], field, 'p:' .. user)
    if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
      redis.call('ZADD', KEYS[5], 0, user)
      if info ~= '' then
        redis.call('HSET', KEYS[4], user, info)
        announce('join', user, info)
      else
        redis.call('HDEL', KEYS[4], user)
        announce('join', user, nil)
      end
      joined = 1
    end
  end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[8]), field)
  tidy()
  return joined
end

if op == 'leave' then
  local left = leave(ARGV[5])
  tidy()
  return left
end

if op == 'lapse' then
  local field = ARGV[5]
  local present = redis.call('HGET', KEYS[1], field)
  if not present then
    tidy()
    return 0
  end
  redis.call('HSET', KEYS[1], field, 'l:' .. string.sub(present, 3))
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), field)
  tidy()
  return 1
end

if op == 'refresh' then
  local until_ms = now + tonumber(ARGV[5])
  local missing = {}
  for i = 6, #ARGV do
    local present = redis.call('HGET', KEYS[1], ARGV[i])
    if not present then
      missing[#missing + 1] = ARGV[i]
    elseif string.sub(present, 1, 2) == 'p:' then
      redis.call('ZADD', KEYS[2], until_ms, ARGV[i])
    end
  end
  tidy()
  return missing
end

if op == 'members' then
  if expired > 0 then
    tidy()
  end
  local epoch, seq = head()
  local limit = tonumber(ARGV[6])
  local from = '-'
  if ARGV[5] ~= '' then
    from = '(' .. ARGV[5]
  end
  local users = redis.call('ZRANGEBYLEX', KEYS[5], from, '+', 'LIMIT', 0, limit + 1)
  local more = '0'
  if #users > limit then
    more = '1'
  end
  local answer = {epoch, seq, more}
  for i = 1, math.min(#users, limit) do
    local user = users[i]
    answer[#answer + 1] = user
    answer[#answer + 1] = redis.call('HGET', KEYS[3], user) or '1'
    answer[#answer + 1] = redis.call('HGET', KEYS[4], user) or ''
  end
  return answer
end

return redis.error_reply('unknown presence operation ' .. tostring(op))

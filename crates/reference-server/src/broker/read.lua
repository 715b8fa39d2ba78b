-- Ferry's read of a channel for a subscribe or a history page (FERRY-SUBSCRIBE-2,
-- FERRY-RESUME-1, FERRY-RESUME-2, FERRY-RESUME-5). Runs after retain.lua.
--
-- KEYS[1] the channel's state hash, KEYS[2] its stream (see publish.lua)
-- ARGV[1] a fresh epoch, used if the channel has none (new, or its state was lost)
-- ARGV[2], ARGV[3] retention: events kept whatever their age; age in ms kept whatever their number
-- ARGV[4] the epoch of the position read from ("" for the current one)
-- ARGV[5] the seq read after ("" for the oldest retained event)
-- ARGV[6] most events to answer (0 for none)
-- ARGV[7] "subscribe" (no events unless every one after the position is retained) or "history"
--   (on a gap, the page starts at the oldest retained event)
--
-- Answers {epoch, head seq, seq before the oldest retained event, gap ("" if none), frames...}.

local state = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'last_ms')
local epoch = state[1]
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'last_ms', 0)
  state = {epoch, '0', '0'}
end
local head = tonumber(state[2]) or 0
retain(KEYS[2], head, clock(tonumber(state[3]) or 0), tonumber(ARGV[2]), tonumber(ARGV[3]))

local before_oldest = head
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #oldest > 0 then
  before_oldest = tonumber(string.match(oldest[1][1], '^(%d+)')) - 1
end

local gap = ''
local after = before_oldest
if ARGV[4] ~= '' and ARGV[4] ~= epoch then
  gap = 'epoch_changed'
elseif ARGV[5] ~= '' then
  after = tonumber(ARGV[5])
  if after > head then
    gap = 'position_ahead'
  elseif after < before_oldest then
    gap = 'history_exceeded'
  end
end
if gap ~= '' then
  after = before_oldest
end

local answer = {epoch, string.format('%d', head), string.format('%d', before_oldest), gap}
local limit = tonumber(ARGV[6])
if limit > 0 and after < head and (gap == '' or ARGV[7] == 'history') then
  local entries = redis.call('XRANGE', KEYS[2], string.format('%d', after + 1) .. '-0', '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    answer[#answer + 1] = entry[2][4]
  end
end
return answer

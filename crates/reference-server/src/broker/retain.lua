-- Ferry's retention of a channel's stream (FERRY-RESUME-3), shared by the broker's scripts: an
-- event goes once it is beyond the last `max_events` AND older than `max_age_ms`, so a burst
-- keeps every event of the window and a quiet channel keeps its last `max_events`. Entries have
-- the id "<seq>-0" and their Redis time in ms as their first field (t), non-decreasing in seq.
local function retain(stream, head, now, max_events, max_age_ms)
  local beyond = head - max_events
  if beyond < 1 then
    return
  end
  local cutoff = now - max_age_ms
  -- The common case, the oldest event still young, costs one entry.
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #oldest == 0 or tonumber(oldest[1][2][2]) >= cutoff then
    return
  end
  while true do
    local old = redis.call('XRANGE', stream, '-', string.format('%d', beyond) .. '-0', 'COUNT', 64)
    if #old == 0 then
      return
    end
    for _, entry in ipairs(old) do
      if tonumber(entry[2][2]) >= cutoff then
        redis.call('XTRIM', stream, 'MINID', entry[1])
        return
      end
    end
    local last_seq = tonumber(string.match(old[#old][1], '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', string.format('%d', last_seq + 1) .. '-0')
    if #old < 64 then
      return
    end
  end
end

-- Redis's clock in ms, never before the channel's last event (KEYS[1]'s last_ms).
local function clock(last_ms)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if now < last_ms then
    return last_ms
  end
  return now
end


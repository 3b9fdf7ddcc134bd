package quota

import "github.com/redis/go-redis/v9"

// The Redis side of the sliding windows: the same arithmetic as counter
// (window.go), one hash per counter. Fields: "n" the newest sub-bucket index
// seen, "t" the running total, and one field per sub-bucket still in the
// window, named by its absolute index. Timestamps come from the caller (the
// replica's clock, in Unix milliseconds), so replicas need synchronised
// clocks (NTP): a skew of s moves sub-bucket boundaries by s, nothing more.
//
// Each script works on all of a request's counters at once, so an admission
// is one EVALSHA: one round trip, atomic (Redis runs a script alone).

// luaAdvance moves counter key to sub-bucket cur, deleting the sub-buckets
// that left the window and subtracting them from the total. It returns
// the newest index, the total and whether the hash must be written back.
const luaAdvance = `
local function advance(key, cur, nslots)
  local st = redis.call('HMGET', key, 'n', 't')
  local nw = tonumber(st[1])
  local t = tonumber(st[2]) or 0
  if nw == nil then
    return cur, 0, false
  end
  if cur <= nw then
    return nw, t, false
  end
  if cur - nw >= nslots then
    redis.call('DEL', key)
    return cur, 0, true
  end
  for x = nw - nslots + 1, cur - nslots do
    local v = redis.call('HGET', key, x)
    if v then
      t = t - tonumber(v)
      redis.call('HDEL', key, x)
    end
  end
  return cur, t, true
end

local function resetIn(key, nw, nslots, width, now)
  for x = nw, nw - nslots + 1, -1 do
    local v = tonumber(redis.call('HGET', key, x) or '0')
    if v ~= 0 then
      return (x + nslots) * width - now
    end
  end
  return 0
end
`

// admitScript: KEYS are the counters; ARGV[1] is now (ms), then four
// values per counter: sub-bucket width (ms), slots (sub-buckets + 1), max,
// amount. It adds every amount only if every counter stays within its max
// (amounts of 0 never refuse). It returns {admitted, then per counter: used
// (after admission, or counted now if refused), reset ms, retry ms,
// exhausted}.
var admitScript = redis.NewScript(luaAdvance + `
local now = tonumber(ARGV[1])
local nk = #KEYS
local cur, nw, tot, dirty = {}, {}, {}, {}
local ok = 1
local exh = {}
for i = 1, nk do
  local a = 1 + (i - 1) * 4
  local width, nslots, maxv, n = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local c = math.floor(now / width)
  local newest, t, d = advance(KEYS[i], c, nslots)
  cur[i], nw[i], tot[i], dirty[i] = c, newest, t, d
  exh[i] = 0
  if n > 0 and t + n > maxv then
    exh[i] = 1
    ok = 0
  end
end
local res = {ok}
for i = 1, nk do
  local a = 1 + (i - 1) * 4
  local width, nslots, maxv, n = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local key = KEYS[i]
  local reset, retry = 0, 0
  if ok == 1 and n ~= 0 then
    local b = cur[i]
    if b <= nw[i] - nslots then
      b = nw[i] - nslots + 1
    end
    redis.call('HINCRBY', key, b, n)
    tot[i] = tot[i] + n
    dirty[i] = true
  end
  if dirty[i] then
    redis.call('HSET', key, 'n', nw[i], 't', tot[i])
    redis.call('PEXPIRE', key, (nslots + 1) * width)
  end
  if ok == 1 and n > 0 and cur[i] >= nw[i] then
    reset = (cur[i] + nslots) * width - now
  else
    reset = resetIn(key, nw[i], nslots, width, now)
  end
  if exh[i] == 1 and n <= maxv then
    local need = tot[i] + n - maxv
    local freed = 0
    for x = nw[i] - nslots + 1, nw[i] do
      freed = freed + tonumber(redis.call('HGET', key, x) or '0')
      if freed >= need then
        retry = (x + nslots) * width - now
        break
      end
    end
  end
  res[#res + 1] = tot[i]
  res[#res + 1] = reset
  res[#res + 1] = retry
  res[#res + 1] = exh[i]
end
return res
`)

// settleScript: KEYS are the counters; ARGV[1] is now (ms), then four
// values per counter: width (ms), slots, the sub-bucket index charged at
// admission, and the correction to add there (clamped at zero; nothing is
// done for a sub-bucket that has left the window). Returns 1.
var settleScript = redis.NewScript(luaAdvance + `
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 4
  local width, nslots, b, delta = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local key = KEYS[i]
  local nw, t, dirty = advance(key, math.floor(now / width), nslots)
  if b > nw then
    b = nw
  end
  if delta ~= 0 and b > nw - nslots then
    local v = tonumber(redis.call('HGET', key, b) or '0')
    local nv = v + delta
    if nv < 0 then
      nv = 0
    end
    if nv ~= v then
      if nv == 0 then
        redis.call('HDEL', key, b)
      else
        redis.call('HSET', key, b, nv)
      end
      t = t + nv - v
      dirty = true
    end
  end
  if dirty then
    redis.call('HSET', key, 'n', nw, 't', t)
    redis.call('PEXPIRE', key, (nslots + 1) * width)
  end
end
return 1
`)

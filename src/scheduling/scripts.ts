/**
 * The scheduling core's Lua, in one file because every script shares the COMMON helpers and one
 * protocol of keys (below); its length is the scripts'. Every script takes the same first three arguments:
 *   ARGV[1] the core's key prefix (QueueKeys.sched), ARGV[2] BullMQ's key prefix for the queue
 *   (QueueKeys.bull), ARGV[3] the time in ms,
 * and KEYS[1] = `${sched}seq` (routes the call to the queue's cluster slot; every key shares it).
 *
 * Data (all under the prefix S):
 *   w:<gate>     sorted set: the jobs waiting at a gate, scored by their first arrival (FIFO)
 *   j:<job>      hash: a waiting job's seq, the gate it waits at (at), why, parking flag; expires
 *   gates        set: gates that have waiters (the sweep's work list)
 *   limits       hash: gate → its limit (`N` or `N/periodMs`), written when a job parks there
 *   slots:<gate> sorted set: `job@token` leases scored by expiry (one per attempt)
 *   log:<gate>   sorted set: `job@token` starts scored by time (sliding-window rate limits)
 *   hold:<prov>  string: ms until which the provider answers no calls
 *   quota:<prov> hash: the provider's learned rate (limit, period, ok)
 *   log:q:<prov> sorted set: every start of a call to the provider, kept 10 min (what a 429 learns from)
 *   lane:<prio>:<group>, rr:<prio>, prios   fair lanes: FIFO lists per group, the groups with
 *                work at a priority (rotated round robin), the priorities with work
 *   lp           hash: lane jobs their producer is still adding (`1`; `!` once let in)
 *   tmr          hash: gate → `untilMs|job`, the waiter whose delay ends when the gate reopens
 *   promoting    sorted set: woken jobs being promoted, by when (the sweep retries stale ones)
 *   done:<job>   string: the job has a final record (a follow-up may start)
 *   placed:<job> string: `after\tplacedAtMs` — a follow-up's fixed place in its thread
 *   gather:<job> string: the batch whose gathering parent waits for this member (see gathered)
 *   ended:<b>    set: the members of gathered batch b that have ended
 *   gtotal:<b>   string: how many members batch b has, once all were added (its parent may start)
 *   seq          counter for arrival order
 *
 * A job that may not start yet parks: it is moved to BullMQ's delayed set (by the worker, with
 * the lock it holds) far in the future, or until its gate reopens when it is the one waiter that
 * keeps the gate's timer. Whoever frees what it waits for wakes it: the script moves it to
 * `promoting` and the caller promotes it. A job still on its way into the delayed set (parking
 * flag set) is marked woken instead, and promotes itself once parked.
 */

const COMMON = `
local S = ARGV[1]
local B = ARGV[2]
local now = tonumber(ARGV[3])
local rcall = redis.call
local WAIT_TTL = 2592000000 -- a waiting job's place in line is remembered 30 days

-- Running leases of a slot gate, after dropping expired ones (a dead worker's).
local function running(g)
  local key = S .. 'slots:' .. g
  rcall('ZREMRANGEBYSCORE', key, '-inf', now)
  return rcall('ZCARD', key)
end


-- Promotes a job sleeping in the delayed set (parked, or in a fair lane), or marks a lane job its
-- producer is still adding (it promotes it then). False when it is neither: it left the queue.
local function letIn(job, out)
  if rcall('ZSCORE', B .. 'delayed', job) then
    rcall('ZADD', S .. 'promoting', now, job)
    out[#out + 1] = job
    return true
  end
  if rcall('HGET', S .. 'lp', job) == '1' then
    -- Its producer is still adding it and promotes it then; should that producer die, the
    -- sweep promotes it from \`promoting\`.
    rcall('HSET', S .. 'lp', job, '!')
    rcall('ZADD', S .. 'promoting', now, job)
    return true
  end
  return false -- removed from the queue while it waited
end

-- Makes one waiting job ready: promoted when it sleeps in the delayed set, marked woken when it
-- is still on its way there (it promotes itself), forgotten when it left the queue. Returns
-- whether it was still there.
local function rouse(job, out)
  if letIn(job, out) then return true end
  local J = S .. 'j:' .. job
  if rcall('HGET', J, 'parking') == '1' then
    -- On its way into the delayed set: it promotes itself once there; should its worker die
    -- in between, the sweep promotes it from \`promoting\`.
    rcall('HSET', J, 'parking', '!')
    rcall('ZADD', S .. 'promoting', now, job)
    return true
  end
  if rcall('EXISTS', B .. job) == 0 then
    rcall('DEL', J)
    return false
  end
  return true -- already waiting or running: it finds its own way
end

-- Whether every member of gathered batch b has ended (false while its members are still being added),
-- and how many have, of how many.
local function gathered(b)
  local total = tonumber(rcall('GET', S .. 'gtotal:' .. b) or '-1')
  local ended = rcall('SCARD', S .. 'ended:' .. b)
  return total >= 0 and ended >= total, ended, total
end

-- Wakes up to n waiters of gate g (lowest arrival first); appends the jobs to promote to out.
local function wake(g, n, out)
  local woken = 0
  local wkey = S .. 'w:' .. g
  if rcall('EXISTS', wkey) == 0 then return 0 end
  while woken < n do
    local head = rcall('ZRANGE', wkey, 0, 0)[1]
    if not head then break end
    rcall('ZREM', wkey, head)
    rcall('HDEL', S .. 'j:' .. head, 'at')
    if rouse(head, out) then woken = woken + 1 end
  end
  if rcall('ZCARD', wkey) == 0 then
    rcall('SREM', S .. 'gates', g)
    rcall('HDEL', S .. 'tmr', g)
  end
  return woken
end

-- A lane job (\`job\\tmodel\\tkey\`) whose concurrency cap is full, or has others waiting, waits at
-- that cap's gate straight from its lane, without a trip through the queue. The caps are those
-- the workers published (caps: gate → limit, \`k:\` for every concurrency key).
local function capped(entry)
  local job, model, key = string.match(entry, '^([^\t]*)\t([^\t]*)\t(.*)$')
  if not job then return entry, nil end
  if rcall('EXISTS', S .. 'caps') == 0 then return job, nil end
  local gates = {}
  if model ~= '' then
    local provider = string.match(model, '^([^/]*)')
    gates = {'m:' .. model, 'm:' .. provider, 'm:*'}
  else
    gates = {'m:*'}
  end
  local ask = {}
  for _, g in ipairs(gates) do ask[#ask + 1] = g end
  ask[#ask + 1] = 'k:'
  local limits = rcall('HMGET', S .. 'caps', unpack(ask))
  local candidates = {}
  for k, g in ipairs(gates) do if limits[k] then candidates[#candidates + 1] = {g, tonumber(limits[k])} end end
  if key ~= '' and limits[#ask] then candidates[#candidates + 1] = {'k:' .. key, tonumber(limits[#ask])} end
  for _, c in ipairs(candidates) do
    local g, limit = c[1], c[2]
    local count = running(g)
    if count >= limit or rcall('EXISTS', S .. 'w:' .. g) == 1 then
      local J = S .. 'j:' .. job
      local seq = rcall('INCR', S .. 'seq')
      rcall('ZADD', S .. 'w:' .. g, seq, job)
      rcall('SADD', S .. 'gates', g)
      rcall('HSET', S .. 'limits', g, limit)
      rcall('HSET', J, 'seq', seq, 'at', g, 'why', count .. '/' .. limit, 'until', 0)
      rcall('PEXPIRE', J, WAIT_TTL)
      return job, g
    end
  end
  if #candidates > 0 then
    -- Let in under a cap: it keeps this place in line should it meet a full cap after all.
    local J = S .. 'j:' .. job
    rcall('HSET', J, 'seq', rcall('INCR', S .. 'seq'))
    rcall('PEXPIRE', J, WAIT_TTL)
  end
  return job, nil
end

-- Moves jobs from the fair lanes into the queue while fewer than \`window\` are ready to fetch:
-- the lowest priority number first, round robin across the groups that have work at it.
local function feed(window, out)
  if rcall('EXISTS', S .. 'prios') == 0 then return end
  local room = window - rcall('LLEN', B .. 'wait') - rcall('ZCARD', B .. 'prioritized')
  local moved = 0
  while room > 0 and moved < 200 do
    local prio = rcall('ZRANGE', S .. 'prios', 0, 0)[1]
    if not prio then return end
    local rr = S .. 'rr:' .. prio
    local group = rcall('LMOVE', rr, rr, 'LEFT', 'RIGHT')
    if not group then
      rcall('ZREM', S .. 'prios', prio)
    else
      local lane = S .. 'lane:' .. prio .. ':' .. group
      local entry = rcall('LPOP', lane)
      if rcall('LLEN', lane) == 0 then
        rcall('LREM', rr, 0, group)
        if rcall('LLEN', rr) == 0 then rcall('ZREM', S .. 'prios', prio) end
      end
      if entry then
        moved = moved + 1
        local job, gate = capped(entry)
        if not gate and letIn(job, out) then room = room - 1 end
      end
    end
  end
end

-- Starts in the last period of a sliding-window gate (after forgetting those older than keep),
-- and when the oldest of them leaves the window.
local function started(g, period, keep)
  local key = S .. 'log:' .. g
  rcall('ZREMRANGEBYSCORE', key, '-inf', now - keep)
  local from = '(' .. (now - period)
  local count = rcall('ZCOUNT', key, from, '+inf')
  local oldest = rcall('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]
  return count, (oldest and (tonumber(oldest) + period) or now)
end

-- A provider's learned rate: limit and period (nil when none is learned).
local function quota(p)
  local q = rcall('HMGET', S .. 'quota:' .. p, 'limit', 'period')
  if not q[1] then return nil, nil end
  return tonumber(q[1]), tonumber(q[2])
end

-- Whether the predecessor of a follow-up has ended (or is gone for good), and if not, until
-- when a predecessor that was placed but never added may still appear.
local function predecessorDone(pred, grace, R)
  if rcall('EXISTS', S .. 'done:' .. pred) == 1 then return true, nil end
  -- Ended without the mark: BullMQ finished it (failed on its own), or its record predates the mark.
  if rcall('ZSCORE', B .. 'completed', pred) or rcall('ZSCORE', B .. 'failed', pred) then return true, nil end
  local raw = rcall('GET', R .. pred)
  if raw then
    local ok, record = pcall(cjson.decode, raw)
    if ok and type(record) == 'table' and (record.state == 'completed' or record.state == 'failed') then return true, nil end
  end
  if rcall('EXISTS', B .. pred) == 1 or raw then return false, nil end
  local placed = rcall('GET', S .. 'placed:' .. pred)
  if placed then
    local at = tonumber(string.match(placed, '\\t(%d+)$') or '0')
    if at + grace > now then return false, at + grace end
  end
  return true, nil
end
`;

/**
 * Admit a job, or park it at the first gate that holds it.
 *   ARGV[4] job, ARGV[5] lease member (`job@token`), ARGV[6] lease expiry, ARGV[7] the far
 *   delay of a parked job (a backstop), ARGV[8] the result-record prefix, ARGV[9] the fair window
 *   (see feed), ARGV[10] number of gates, then 4 per gate: kind, gate, a, b:
 *     c chain   a = predecessor, b = placement grace ms
 *     g gather  a = batch, b = backstop ms (its members are counted as they end; see ENDED)
 *     h hold    a = provider
 *     s slots   a = limit
 *     r rate    a = limit, b = period ms          (sliding window of starts)
 *     q quota   a = provider, b = history kept ms  (its learned rate, if any; every start is logged)
 * Returns {1, promote...} when admitted, or {0, gate, why, delayUntil, promote...} when parked.
 */
export const ADMIT = `${COMMON}
local job, member, expiry, far, R = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local window = tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local J = S .. 'j:' .. job
local out = {}
local waited = rcall('EXISTS', J) == 1
local seq = nil
rcall('ZREM', S .. 'promoting', job) -- it is here: its promotion, if any, worked
if waited then
  seq = tonumber(rcall('HGET', J, 'seq'))
  rcall('HDEL', J, 'parking')
end

-- Someone who came earlier waits at g (FIFO within a gate).
local function behind(g)
  local head = rcall('ZRANGE', S .. 'w:' .. g, 0, 0, 'WITHSCORES')
  if not head[1] or head[1] == job then return false end
  return seq == nil or tonumber(head[2]) < seq
end

local function park(g, why, untilMs, limit)
  if not seq then
    seq = rcall('INCR', S .. 'seq')
    rcall('HSET', J, 'seq', seq)
  end
  local previous = rcall('HGET', J, 'at')
  if previous and previous ~= g then rcall('ZREM', S .. 'w:' .. previous, job) end
  rcall('ZADD', S .. 'w:' .. g, seq, job)
  rcall('SADD', S .. 'gates', g)
  if limit then rcall('HSET', S .. 'limits', g, limit) end
  rcall('HSET', J, 'at', g, 'why', why, 'parking', '1', 'until', untilMs or 0)
  rcall('PEXPIRE', J, WAIT_TTL)
  local delay = far
  if untilMs then
    -- One waiter keeps the gate's timer; the others sleep until it wakes them.
    local holder = rcall('HGET', S .. 'tmr', g)
    local take = true
    if holder then
      local hu, hj = string.match(holder, '^([%d.]+)|(.*)$')
      if hu and hj ~= job and tonumber(hu) >= untilMs and tonumber(hu) > now and rcall('HGET', S .. 'j:' .. hj, 'at') == g then take = false end
    end
    if take then
      rcall('HSET', S .. 'tmr', g, untilMs .. '|' .. job)
      delay = untilMs
    end
  end
  -- The job leaves the ready jobs: let the next one in from the lanes.
  feed(window, out)
  local reply = {0, g, why, delay}
  for _, id in ipairs(out) do reply[#reply + 1] = id end
  return reply
end

local passed = {}
local i = 11
for k = 1, n do
  local kind, g, a, b = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  if kind == 'c' then
    local done, untilMs = predecessorDone(a, tonumber(b), R)
    if not done then return park(g, 'chain', untilMs, nil) end
  elseif kind == 'g' then
    local done, ended, total = gathered(a)
    if not done then return park(g, ended .. '/' .. total, now + tonumber(b), nil) end
  elseif kind == 'h' then
    local untilMs = tonumber(rcall('GET', S .. 'hold:' .. a) or '0')
    if untilMs > now then return park(g, 'held', untilMs, '0') end
    if behind(g) then
      wake(g, 1, out)
      return park(g, 'held', nil, '0')
    end
    passed[#passed + 1] = {kind, g}
  elseif kind == 's' then
    local limit = tonumber(a)
    local count = running(g)
    if count >= limit then return park(g, count .. '/' .. limit, nil, a) end
    if behind(g) then
      wake(g, limit - count, out)
      return park(g, count .. '/' .. limit, nil, a)
    end
    passed[#passed + 1] = {kind, g, limit, count}
  else -- r, q: a sliding window of starts
    local limit, period, keep
    if kind == 'r' then
      limit, period = tonumber(a), tonumber(b)
      keep = period
    else
      limit, period = quota(a)
      keep = tonumber(b)
    end
    if limit then
      local count, reopens = started(g, period, keep)
      local spec = limit .. '/' .. period
      if count >= limit then return park(g, count .. '/' .. spec, reopens, spec) end
      if behind(g) then
        wake(g, 1, out)
        return park(g, count .. '/' .. spec, reopens, spec)
      end
      passed[#passed + 1] = {kind, g, limit, count, keep, a}
    elseif kind == 'q' then
      passed[#passed + 1] = {kind, g, nil, 0, keep, a} -- logged: what a 429 learns from
    end
  end
end

-- Admitted: take every lease and start, forget the waiting state, pass the turn on.
for _, p in ipairs(passed) do
  local kind, g = p[1], p[2]
  if kind == 's' then
    rcall('ZADD', S .. 'slots:' .. g, expiry, member)
    if p[4] + 1 < p[3] then wake(g, p[3] - p[4] - 1, out) end
  elseif kind == 'r' or kind == 'q' then
    local key = S .. 'log:' .. g
    rcall('ZADD', key, now, member)
    rcall('PEXPIRE', key, p[5] + 1000)
    if not p[3] then
      rcall('ZREMRANGEBYSCORE', key, '-inf', now - p[5])
    else
      if kind == 'q' then
        -- Additive increase: two periods' worth of starts at the learned rate allow one more.
        local qkey = S .. 'quota:' .. p[6]
        if rcall('HINCRBY', qkey, 'ok', 1) >= 2 * p[3] then
          p[3] = p[3] + 1
          rcall('HSET', qkey, 'limit', p[3], 'ok', 0)
        end
      end
      -- Room left in the window: the next waiter may go. None: the next waiter takes the timer,
      -- unless another waiter holds it already.
      local holder = rcall('HGET', S .. 'tmr', g)
      local hu, hj = string.match(holder or '', '^([%d.]+)|(.*)$')
      if holder and (hj == job or tonumber(hu) <= now) then
        rcall('HDEL', S .. 'tmr', g)
        holder = nil
      end
      if p[4] + 1 < p[3] or not holder then wake(g, 1, out) end
    end
  else
    wake(g, 1, out)
  end
end
if waited then
  local at = rcall('HGET', J, 'at')
  if at then rcall('ZREM', S .. 'w:' .. at, job) end
  rcall('DEL', J)
end
feed(window, out)
local reply = {1}
for _, id in ipairs(out) do reply[#reply + 1] = id end
return reply
`;

/**
 * A parked job has reached BullMQ's delayed set. ARGV[4] job. Returns 1 when it was woken
 * meanwhile (the caller promotes it), else 0.
 */
export const PARKED = `${COMMON}
local J = S .. 'j:' .. ARGV[4]
local flag = rcall('HGET', J, 'parking')
rcall('HDEL', J, 'parking')
if flag == '!' then return 1 end
return 0
`;

/**
 * An attempt ends: give back its leases and wake who waits for them.
 *   ARGV[4] lease member, ARGV[5] number of slot gates, then 2 per gate: gate, limit.
 * Returns the jobs to promote.
 */
export const RELEASE = `${COMMON}
local member = ARGV[4]
local n = tonumber(ARGV[5])
local out = {}
local i = 6
for k = 1, n do
  local g, limit = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  rcall('ZREM', S .. 'slots:' .. g, member)
  if rcall('EXISTS', S .. 'w:' .. g) == 1 then
    local room = limit - running(g)
    if room > 0 then wake(g, room, out) end
  end
end
return out
`;

/**
 * Extends leases. ARGV[4] expiry, then pairs: gate, lease member. Returns the members whose
 * lease had lapsed (it is not taken again: someone else may hold the slot now).
 */
export const RENEW = `${COMMON}
local lost = {}
for i = 5, #ARGV, 2 do
  local key = S .. 'slots:' .. ARGV[i]
  if rcall('ZSCORE', key, ARGV[i + 1]) then rcall('ZADD', key, 'XX', ARGV[4], ARGV[i + 1]) else lost[#lost + 1] = ARGV[i + 1] end
end
return lost
`;

/**
 * A job has its final record (which marked it done: ResultStore.put): wake its follow-ups, and
 * the parent gathering its batch once it was the last member to end.
 * ARGV[4] job. Returns the jobs to promote.
 */
export const FINISHED = `${COMMON}
local out = {}
if rcall('EXISTS', S .. 'w:c:' .. ARGV[4]) == 1 then wake('c:' .. ARGV[4], 1000, out) end
local b = rcall('GET', S .. 'gather:' .. ARGV[4])
if b then
  rcall('SADD', S .. 'ended:' .. b, ARGV[4])
  local ttl = rcall('PTTL', S .. 'gather:' .. ARGV[4])
  if ttl > 0 then rcall('PEXPIRE', S .. 'ended:' .. b, ttl) end
  if gathered(b) then wake('g:' .. b, 1, out) end
end
return out
`;

/**
 * A member of a gathered batch runs again (retry): it has not ended any more, and its batch's
 * parent, if it has yet to run, waits for it again. KEYS[1] = `${sched}gather:<job>`, ARGV[1] = `${sched}`, ARGV[2] job.
 */
export const REOPEN = `
local b = redis.call('GET', KEYS[1])
if b then redis.call('SREM', ARGV[1] .. 'ended:' .. b, ARGV[2]) end
return b
`;

/**
 * Members of gathered batch ARGV[4] that ended (ARGV[5..]), counted by a check of their records
 * rather than by FINISHED (one removed without a record). Returns the jobs to promote.
 */
export const ENDED = `${COMMON}
local out = {}
for i = 5, #ARGV do rcall('SADD', S .. 'ended:' .. ARGV[4], ARGV[i]) end
if gathered(ARGV[4]) then wake('g:' .. ARGV[4], 1, out) end
return out
`;

/**
 * The provider answered "too many requests": hold it for every worker until ARGV[5], and learn
 * its rate. ARGV[4] provider, ARGV[5] until (ms), ARGV[6] the longest period to learn over,
 * ARGV[7] the lease member of the call it turned away.
 * What the provider took is the calls started lately (since `until - now` before now) that it
 * has not turned away; the learned rate is that many calls (at least 1, and one fewer than the
 * rate learned before when a fresh hold begins) per the time from the oldest of them to `until`.
 * Returns the learned limit.
 */
export const HOLD = `${COMMON}
local p, untilMs, maxPeriod, member = ARGV[4], math.ceil(tonumber(ARGV[5])), tonumber(ARGV[6]), ARGV[7]
local holdKey = S .. 'hold:' .. p
local current = tonumber(rcall('GET', holdKey) or '0')
if untilMs > current then rcall('SET', holdKey, untilMs, 'PX', math.max(1000, untilMs - now + 60000)) end
local log = S .. 'log:q:' .. p
rcall('ZREM', log, member)
local from = now - math.max(untilMs - now, 1000)
local took = rcall('ZCOUNT', log, from, '+inf')
local oldest = tonumber(rcall('ZRANGEBYSCORE', log, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2] or now)
local limit, period = quota(p)
local learned = math.max(1, took)
if limit then
  local cap = limit
  if current <= now then cap = limit - 1 end
  learned = math.max(1, math.min(learned, cap))
end
local span = math.min(maxPeriod, math.max(period or 0, untilMs - oldest, 1000))
local qkey = S .. 'quota:' .. p
rcall('HSET', qkey, 'limit', learned, 'period', span, 'ok', 0)
rcall('PEXPIRE', qkey, 3600000)
if rcall('EXISTS', S .. 'w:q:' .. p) == 1 then rcall('HSET', S .. 'limits', 'q:' .. p, learned .. '/' .. span) end
return learned
`;

/**
 * The safety net, run by every worker now and then: wakes waiters of gates that are open again
 * (a dead worker's leases expired, a hold passed, a predecessor ended while its waker died)
 * and re-promotes woken jobs whose promotion was lost. ARGV[4] result-record prefix,
 * ARGV[5] placement grace, ARGV[6] how old a promotion must be to be retried, ARGV[7] the fair
 * window (lanes are fed too). Returns the jobs to promote.
 */
export const SWEEP = `${COMMON}
local R, grace, stale = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
feed(tonumber(ARGV[7]), out)
for _, g in ipairs(rcall('SRANDMEMBER', S .. 'gates', 200)) do
  local kind, name = string.sub(g, 1, 1), string.sub(g, 3)
  local limit = rcall('HGET', S .. 'limits', g)
  if rcall('EXISTS', S .. 'w:' .. g) == 0 then
    rcall('SREM', S .. 'gates', g)
  elseif kind == 'c' then
    if predecessorDone(name, grace, R) then wake(g, 1000, out) end
  elseif kind == 'g' then
    if gathered(name) then wake(g, 1, out) end
  elseif kind == 'h' then
    if tonumber(rcall('GET', S .. 'hold:' .. name) or '0') <= now then wake(g, 1, out) end
  elseif kind == 'r' or kind == 'q' then
    local l, period = string.match(limit or '', '^(%d+)/(%d+)$')
    if kind == 'q' then l, period = quota(name) end
    if not l then wake(g, 1, out)
    else
      local count = started(g, tonumber(period), kind == 'q' and 600000 or tonumber(period))
      if count < tonumber(l) then wake(g, 1, out) end
    end
  else
    local room = tonumber(limit or '1') - running(g)
    if room > 0 then wake(g, room, out) end
  end
end
for _, id in ipairs(rcall('ZRANGEBYSCORE', S .. 'promoting', '-inf', now - stale, 'LIMIT', 0, 200)) do
  if rcall('ZSCORE', B .. 'delayed', id) then
    rcall('ZADD', S .. 'promoting', now, id)
    out[#out + 1] = id
  else
    rcall('ZREM', S .. 'promoting', id)
    if rcall('EXISTS', B .. id) == 0 then rcall('HDEL', S .. 'lp', id) end -- its producer never added it
  end
end
return out
`;

/**
 * A producer adds jobs: while no lane has work and fewer than the window are ready, they go
 * straight into the queue; the others wait in their group's lane (FIFO) for feed to let them in.
 *   ARGV[4] window, ARGV[5] count, then 5 per job: job, group, priority,
 *   model, concurrency key. Returns per job 1 (add it ready) or 0 (add it parked: in a lane).
 */
export const LANE = `${COMMON}
local window, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local room = window - rcall('LLEN', B .. 'wait') - rcall('ZCARD', B .. 'prioritized')
local busy = rcall('EXISTS', S .. 'prios') == 1
local reply = {}
local i = 6
for k = 1, n do
  local job, group, prio, model, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  if not busy and room > 0 then
    reply[k] = 1
    room = room - 1
  else
    busy = true
    local lane = S .. 'lane:' .. prio .. ':' .. group
    if rcall('RPUSH', lane, job .. '\t' .. model .. '\t' .. key) == 1 then
      rcall('RPUSH', S .. 'rr:' .. prio, group)
      rcall('ZADD', S .. 'prios', prio, prio)
    end
    rcall('HSET', S .. 'lp', job, '1')
    reply[k] = 0
  end
end
return reply
`;

/**
 * The jobs LANE parked are in the delayed set now. ARGV[4] window, then job IDs. Returns those
 * woken meanwhile and any the lanes let in (the caller promotes them).
 */
export const LANED = `${COMMON}
local out = {}
for i = 5, #ARGV do
  if rcall('HGET', S .. 'lp', ARGV[i]) == '!' then out[#out + 1] = ARGV[i] end
  rcall('HDEL', S .. 'lp', ARGV[i])
end
feed(tonumber(ARGV[4]), out)
return out
`;

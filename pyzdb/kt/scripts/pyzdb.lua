-- Server procedures for pyzdb.kt's script-backed helpers (pyzdb/kt/lua.py, containers.py, queue.py).
-- Load with: ktserver -scr /path/to/pyzdb.lua (a ktserver built with Lua).
-- Every procedure takes "db" (a database index, default 0); names and arguments follow ukt's.

local kt = __kyototycoon__

local function getdb(inmap)
   local idx = tonumber(inmap.db or 0) or 0
   return kt.dbs[idx + 1]
end

local function others(inmap, skip)
   local out = {}
   for k, v in pairs(inmap) do
      if k ~= "db" and k ~= skip then out[k] = v end
   end
   return out
end

-- a positive or negative Python-style index into a list of n items, or nil out of range
local function position(index, n, allow_end)
   local i = tonumber(index)
   if not i then return nil end
   if i < 0 then i = i + n end
   local last = allow_end and n or n - 1
   if i < 0 or i > last then return nil end
   return i + 1
end

-- --- expire times, records, whole database ------------------------------------------
-- its input back: a check that the script is loaded
function echo(inmap, outmap)
   for k, v in pairs(inmap) do outmap[k] = v end
   return kt.RVSUCCESS
end

-- each existing key's expire time set from its argument (kt's xt: a positive one is relative to now, a negative
-- one absolute); relative: the argument is seconds added to the key's current expire time. outmap: key -> the old
-- expire time, or (relative) the new one
local function touch_each(inmap, outmap, relative)
   local db = getdb(inmap)
   for key, arg in pairs(others(inmap)) do
      local value, old = db:get(key)
      if value then
         local xt = tonumber(arg)
         if relative then xt = -(old + xt) end
         db:set(key, value, xt)
         outmap[key] = tostring(relative and -xt or old)
      end
   end
   return kt.RVSUCCESS
end

function touch_bulk(inmap, outmap)
   return touch_each(inmap, outmap, false)
end

function touch_bulk_relative(inmap, outmap)
   return touch_each(inmap, outmap, true)
end

function expire_time(inmap, outmap)
   local value, xt = getdb(inmap):get(inmap.key)
   if value then outmap.xt = tostring(xt) end
   return kt.RVSUCCESS
end

function count(inmap, outmap)
   outmap.count = tostring(getdb(inmap):count())
   return kt.RVSUCCESS
end

function clear(inmap, outmap)
   if not getdb(inmap):clear() then return kt.RVEINTERNAL end
   return kt.RVSUCCESS
end

function seize(inmap, outmap)
   local value = getdb(inmap):seize(inmap.key)
   if value then outmap.value = value end
   return kt.RVSUCCESS
end

function get_error(inmap, outmap)
   local err = getdb(inmap):error()
   outmap.code = tostring(err:code())
   outmap.message = err:message()
   return kt.RVSUCCESS
end

local function matched(keys, outmap)
   for _, key in ipairs(keys or {}) do outmap[key] = "" end
   return kt.RVSUCCESS
end

function match_prefix(inmap, outmap)
   return matched(getdb(inmap):match_prefix(inmap.prefix or "", tonumber(inmap.max or -1)), outmap)
end

function match_regex(inmap, outmap)
   return matched(getdb(inmap):match_regex(inmap.regex or "", tonumber(inmap.max or -1)), outmap)
end

function match_similar(inmap, outmap)
   local db = getdb(inmap)
   local keys = db:match_similar(inmap.origin or "", tonumber(inmap.range or 1), inmap.utf == "true",
                                 tonumber(inmap.max or -1))
   return matched(keys, outmap)
end

-- --- containers: one record holding a kt.mapdump (Hash, Set) or kt.arraydump (List, Queue, Schedule) ---
-- the database and the container in record inmap[field], read with loader
local function load_record(inmap, field, loader)
   local db = getdb(inmap)
   local data = db:get(inmap[field])
   return db, data and loader(data) or {}
end

-- write a container record back as ukt does: only if it changed, keeping the record's expire time
-- (an emptied container stays as an empty record; none is created for nothing)
local function store(db, key, data)
   local old, xt = db:get(key)
   if old == data or (old == nil and data == "") then return end
   if xt then db:set(key, data, -xt) else db:set(key, data) end
end

-- a procedure running fn(inmap, outmap, container) on the record inmap[field]; the container fn
-- returns (or the one it was given, changed in place) is written back
local function on_record(field, loader, dumper)
   return function(fn)
      return function(inmap, outmap)
         local db, container = load_record(inmap, field, loader)
         local result = fn(inmap, outmap, container)
         store(db, inmap[field], dumper(result or container))
         return kt.RVSUCCESS
      end
   end
end

local on_hash = on_record("table_key", kt.mapload, kt.mapdump)
local on_set = on_record("key", kt.mapload, kt.mapdump)
local on_list = on_record("key", kt.arrayload, kt.arraydump)

local function size(map)
   local n = 0
   for _ in pairs(map) do n = n + 1 end
   return n
end

-- the values of "0", "1", ... in order
local function ordered(inmap)
   local values, i = {}, 0
   while inmap[tostring(i)] do values[#values + 1] = inmap[tostring(i)]; i = i + 1 end
   return values
end

-- --- Hash: fields under "table_key" --------------------------------------------------------
hmset = on_hash(function(inmap, outmap, map)
   local n = 0
   for k, v in pairs(others(inmap, "table_key")) do map[k] = v; n = n + 1 end
   outmap.num = tostring(n)
end)

hmget = on_hash(function(inmap, outmap, map)
   for k in pairs(others(inmap, "table_key")) do
      if map[k] then outmap[k] = map[k] end
   end
end)

hmdel = on_hash(function(inmap, outmap, map)
   local n = 0
   for k in pairs(others(inmap, "table_key")) do
      if map[k] then map[k] = nil; n = n + 1 end
   end
   outmap.num = tostring(n)
end)

hgetall = on_hash(function(inmap, outmap, map)
   for k, v in pairs(map) do outmap[k] = v end
end)

hset = on_hash(function(inmap, outmap, map)
   map[inmap.key] = inmap.value
   outmap.num = "1"
end)

hsetnx = on_hash(function(inmap, outmap, map)
   outmap.num = map[inmap.key] and "0" or "1"
   if not map[inmap.key] then map[inmap.key] = inmap.value end
end)

hget = on_hash(function(inmap, outmap, map)
   if map[inmap.key] then outmap.value = map[inmap.key] end
end)

hdel = on_hash(function(inmap, outmap, map)
   outmap.num = map[inmap.key] and "1" or "0"
   map[inmap.key] = nil
end)

hlen = on_hash(function(inmap, outmap, map) outmap.num = tostring(size(map)) end)
hcontains = on_hash(function(inmap, outmap, map) outmap.num = map[inmap.key] and "1" or "0" end)

-- --- Set: members as the keys of a map under "key" -----------------------------------------
sadd = on_set(function(inmap, outmap, map)
   local n = 0
   for _, v in pairs(others(inmap, "key")) do
      if not map[v] then map[v] = ""; n = n + 1 end
   end
   outmap.num = tostring(n)
end)

srem = on_set(function(inmap, outmap, map)
   local n = 0
   for _, v in pairs(others(inmap, "key")) do
      if map[v] then map[v] = nil; n = n + 1 end
   end
   outmap.num = tostring(n)
end)

scard = on_set(function(inmap, outmap, map) outmap.num = tostring(size(map)) end)
sismember = on_set(function(inmap, outmap, map) outmap.num = map[inmap.value] and "1" or "0" end)

smembers = on_set(function(inmap, outmap, map)
   local i = 0
   for member in pairs(map) do outmap[tostring(i)] = member; i = i + 1 end
end)

spop = on_set(function(inmap, outmap, map)
   local member = next(map)
   outmap.num = member and "1" or "0"
   if member then map[member] = nil; outmap.value = member end
end)

-- sinter / sunion / sdiff of the sets at "key" and "key2"; with "dest", also stored there
local function set_op(keep)
   return function(inmap, outmap)
      local db, a = load_record(inmap, "key", kt.mapload)
      local _, b = load_record(inmap, "key2", kt.mapload)
      local result, i = {}, 0
      for m in pairs(a) do if keep(true, b[m] ~= nil) then result[m] = "" end end
      for m in pairs(b) do if a[m] == nil and keep(false, true) then result[m] = "" end end
      for m in pairs(result) do outmap[tostring(i)] = m; i = i + 1 end
      if inmap.dest then store(db, inmap.dest, kt.mapdump(result)) end
      return kt.RVSUCCESS
   end
end

sinter = set_op(function(in_a, in_b) return in_a and in_b end)
sunion = set_op(function(in_a, in_b) return in_a or in_b end)
sdiff = set_op(function(in_a, in_b) return in_a and not in_b end)

-- --- List: items under "key" ------------------------------------------------------------------
llpush = on_list(function(inmap, outmap, list)
   table.insert(list, 1, inmap.value)
   outmap.length = tostring(#list)
end)

lrpush = on_list(function(inmap, outmap, list)
   list[#list + 1] = inmap.value
   outmap.length = tostring(#list)
end)

lextend = on_list(function(inmap, outmap, list)
   for _, v in ipairs(ordered(inmap)) do list[#list + 1] = v end
   outmap.length = tostring(#list)
end)

-- a Python slice's bounds (1-based, inclusive) of "start" and "stop" over n items
local function bounds(inmap, n)
   local start, stop = tonumber(inmap.start or 0), tonumber(inmap.stop or n)
   if start < 0 then start = math.max(start + n, 0) end
   if stop < 0 then stop = math.max(stop + n, 0) end
   return start + 1, math.min(stop, n)
end

lrange = on_list(function(inmap, outmap, list)
   local first, last = bounds(inmap, #list)
   for i = first, last do outmap[tostring(i - first)] = list[i] end
end)

lremrange = on_list(function(inmap, outmap, list)
   local first, last = bounds(inmap, #list)
   local kept = {}
   for i = 1, #list do
      if i < first or i > last then kept[#kept + 1] = list[i] end
   end
   outmap.length = tostring(#kept)
   return kept
end)

lindex = on_list(function(inmap, outmap, list)
   local i = position(inmap.index, #list, false)
   if i then outmap.value = list[i] end
end)

linsert = on_list(function(inmap, outmap, list)
   local i = position(inmap.index, #list, true)
   if i then table.insert(list, i, inmap.value); outmap.length = tostring(#list) end
end)

lrem = on_list(function(inmap, outmap, list)
   local i = position(inmap.index, #list, false)
   if i then outmap.value = table.remove(list, i) end
end)

lset = on_list(function(inmap, outmap, list)
   local i = position(inmap.index, #list, false)
   if i then list[i] = inmap.value; outmap.num = "1" end
end)

llpop = on_list(function(inmap, outmap, list)
   if #list > 0 then outmap.value = table.remove(list, 1) end
end)

lrpop = on_list(function(inmap, outmap, list)
   if #list > 0 then outmap.value = table.remove(list) end
end)

llen = on_list(function(inmap, outmap, list) outmap.num = tostring(#list) end)

local function find(from, to, step)
   return on_list(function(inmap, outmap, list)
      outmap.index = "-1"
      local first, last = from, to
      if from < 0 then first, last = #list, 1 else last = #list end
      for i = first, last, step do
         if list[i] == inmap.value then outmap.index = tostring(i - 1); break end
      end
   end)
end

lfind = find(1, nil, 1)
lrfind = find(-1, 1, -1)

-- pop from one end of "key", push onto the other end of "dest" (the same list: a rotation)
local function poppush(from_head)
   return function(inmap, outmap)
      local db, list = load_record(inmap, "key", kt.arrayload)
      if #list == 0 then return kt.RVSUCCESS end
      local value = table.remove(list, from_head and 1 or #list)
      store(db, inmap.key, kt.arraydump(list))
      local _, dest = load_record(inmap, "dest", kt.arrayload)
      if from_head then dest[#dest + 1] = value else table.insert(dest, 1, value) end
      store(db, inmap.dest, kt.arraydump(dest))
      outmap.value = value
      return kt.RVSUCCESS
   end
end

llpoprpush = poppush(true)
lrpoplpush = poppush(false)

-- --- Queue and Schedule: "score<TAB>item" entries, in leaving order ---------------------------
local function entry(e)
   local tab = string.find(e, "\t", 1, true)
   return tonumber(string.sub(e, 1, tab - 1)), string.sub(e, tab + 1)
end

-- put item after every entry that leaves before it: a higher score (queue) or a lower one (schedule)
local function enqueue(list, score, item, rising)
   local at = #list + 1
   for i = 1, #list do
      local s = entry(list[i])
      if (rising and s > score) or (not rising and s < score) then at = i; break end
   end
   table.insert(list, at, string.format("%d", score) .. "\t" .. item)
end

local function adder(rising)
   return on_list(function(inmap, outmap, list)
      for _, item in ipairs(ordered(inmap)) do enqueue(list, tonumber(inmap.score or 0), item, rising) end
      outmap.num = tostring(#list)
   end)
end

queue_add = adder(false)
schedule_add = adder(true)

-- up to "n" entries from the head (or the tail) whose score is at least "min_score"; "remove" takes them
local function take(from_end, remove)
   return on_list(function(inmap, outmap, list)
      local want, min = tonumber(inmap.n or 1), tonumber(inmap.min_score)
      local taken, kept, got = {}, {}, 0
      local first, last, step = 1, #list, 1
      if from_end then first, last, step = #list, 1, -1 end
      for i = first, last, step do
         local score, item = entry(list[i])
         if got < want and (min == nil or score >= min) then
            outmap[tostring(got)] = item
            got = got + 1
            taken[i] = true
         end
      end
      if not remove then return nil end
      for i = 1, #list do
         if not taken[i] then kept[#kept + 1] = list[i] end
      end
      return kept
   end)
end

queue_pop = take(false, true)
queue_rpop = take(true, true)
queue_peek = take(false, false)
queue_rpeek = take(true, false)
queue_count = on_list(function(inmap, outmap, list) outmap.num = tostring(#list) end)

-- the entries equal to inmap["0"] (up to "n", from the head or with "from_end" the tail) and the others
local function matching(inmap, list)
   local limit, found, kept, hit = tonumber(inmap.n or -1), {}, {}, {}
   local first, last, step = 1, #list, 1
   if inmap.from_end then first, last, step = #list, 1, -1 end
   for i = first, last, step do
      local _, item = entry(list[i])
      if item == inmap["0"] and (limit < 0 or #found < limit) then hit[i] = true; found[#found + 1] = list[i] end
   end
   for i = 1, #list do if not hit[i] then kept[#kept + 1] = list[i] end end
   return found, kept
end

queue_remove = on_list(function(inmap, outmap, list)
   local found, kept = matching(inmap, list)
   outmap.num = tostring(#found)
   return kept
end)

queue_set_priority = on_list(function(inmap, outmap, list)
   local found, kept = matching(inmap, list)
   for _, e in ipairs(found) do
      local _, item = entry(e)
      enqueue(kept, tonumber(inmap.score), item, false)
   end
   outmap.num = tostring(#found)
   return kept
end)

-- move up to "n" entries from the head of "key" to "dest", keeping their scores
function queue_transfer(inmap, outmap)
   local db, list = load_record(inmap, "key", kt.arrayload)
   local moved = {}
   for i = 1, math.min(tonumber(inmap.n or 1), #list) do moved[i] = table.remove(list, 1) end
   store(db, inmap.key, kt.arraydump(list))
   local _, dest = load_record(inmap, "dest", kt.arrayload)
   for i, e in ipairs(moved) do
      local score, item = entry(e)
      enqueue(dest, score, item, false)
      outmap[tostring(i - 1)] = item
   end
   store(db, inmap.dest, kt.arraydump(dest))
   return kt.RVSUCCESS
end

function queue_clear(inmap, outmap)
   local db, list = load_record(inmap, "key", kt.arrayload)
   db:remove(inmap.key)
   outmap.num = tostring(#list)
   return kt.RVSUCCESS
end

-- the first "n" items (default all) whose score is at most "score" (default: any); "remove" takes them out
schedule_read = on_list(function(inmap, outmap, list)
   local limit, upto, kept, got = tonumber(inmap.n or -1), tonumber(inmap.score), {}, 0
   for i = 1, #list do
      local score, item = entry(list[i])
      if (limit < 0 or got < limit) and (upto == nil or score <= upto) then
         outmap[tostring(got)] = item
         got = got + 1
      else
         kept[#kept + 1] = list[i]
      end
   end
   if inmap.remove then return kept end
end)

-- --- conditional writes and counters (ukt serves these over HTTP) --------------------
local function xt_of(inmap)
   return tonumber(inmap.xt or "9223372036854775807")
end

local function flag(ok, outmap)
   outmap.num = ok and "1" or "0"
   return kt.RVSUCCESS
end

function add(inmap, outmap) return flag(getdb(inmap):add(inmap.key, inmap.value, xt_of(inmap)), outmap) end
function replace(inmap, outmap) return flag(getdb(inmap):replace(inmap.key, inmap.value, xt_of(inmap)), outmap) end
function append(inmap, outmap) return flag(getdb(inmap):append(inmap.key, inmap.value, xt_of(inmap)), outmap) end

function cas(inmap, outmap)
   return flag(getdb(inmap):cas(inmap.key, inmap.old, inmap.new, xt_of(inmap)), outmap)
end

function increment(inmap, outmap)
   local n = getdb(inmap):increment(inmap.key, tonumber(inmap.num or 1), tonumber(inmap.orig or 0), xt_of(inmap))
   if n == nil then return kt.RVELOGIC end
   outmap.num = string.format("%d", n)
   return kt.RVSUCCESS
end

function increment_double(inmap, outmap)
   local db = getdb(inmap)
   local n = db:increment_double(inmap.key, tonumber(inmap.num or 1), tonumber(inmap.orig or 0), xt_of(inmap))
   if n == nil then return kt.RVELOGIC end
   outmap.num = string.format("%.17g", n)
   return kt.RVSUCCESS
end

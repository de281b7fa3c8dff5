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

function touch_bulk(inmap, outmap)
   local db = getdb(inmap)
   for key, xt in pairs(others(inmap)) do
      local value, old = db:get(key)
      if value then
         db:set(key, value, tonumber(xt))
         outmap[key] = tostring(old)
      end
   end
   return kt.RVSUCCESS
end

function touch_bulk_relative(inmap, outmap)
   local db = getdb(inmap)
   for key, n in pairs(others(inmap)) do
      local value, old = db:get(key)
      if value then
         local xt = old + tonumber(n)
         db:set(key, value, -xt)
         outmap[key] = tostring(xt)
      end
   end
   return kt.RVSUCCESS
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

-- --- Hash: a kt.mapdump record under "table_key" ------------------------------------
-- the database and the container in record inmap[field], read with loader (kt.mapload or kt.arrayload)
local function load_record(inmap, field, loader)
   local db = getdb(inmap)
   local data = db:get(inmap[field])
   return db, data and loader(data) or {}
end

local function hash_load(inmap) return load_record(inmap, "table_key", kt.mapload) end

-- write a container record back as ukt does: only if it changed, keeping the record's expire time
-- (an emptied container stays as an empty record; none is created for nothing)
local function store(db, key, data)
   local old, xt = db:get(key)
   if old == data or (old == nil and data == "") then return end
   if xt then db:set(key, data, -xt) else db:set(key, data) end
end

local function hash_store(db, key, map) store(db, key, kt.mapdump(map)) end

local function size(map)
   local n = 0
   for _ in pairs(map) do n = n + 1 end
   return n
end

function hmset(inmap, outmap)
   local db, map = hash_load(inmap)
   local n = 0
   for k, v in pairs(others(inmap, "table_key")) do map[k] = v; n = n + 1 end
   hash_store(db, inmap.table_key, map)
   outmap.num = tostring(n)
   return kt.RVSUCCESS
end

function hmget(inmap, outmap)
   local _, map = hash_load(inmap)
   for k in pairs(others(inmap, "table_key")) do
      if map[k] then outmap[k] = map[k] end
   end
   return kt.RVSUCCESS
end

function hmdel(inmap, outmap)
   local db, map = hash_load(inmap)
   local n = 0
   for k in pairs(others(inmap, "table_key")) do
      if map[k] then map[k] = nil; n = n + 1 end
   end
   hash_store(db, inmap.table_key, map)
   outmap.num = tostring(n)
   return kt.RVSUCCESS
end

function hgetall(inmap, outmap)
   local _, map = hash_load(inmap)
   for k, v in pairs(map) do outmap[k] = v end
   return kt.RVSUCCESS
end

function hset(inmap, outmap)
   local db, map = hash_load(inmap)
   map[inmap.key] = inmap.value
   hash_store(db, inmap.table_key, map)
   outmap.num = "1"
   return kt.RVSUCCESS
end

function hsetnx(inmap, outmap)
   local db, map = hash_load(inmap)
   if map[inmap.key] then outmap.num = "0"; return kt.RVSUCCESS end
   map[inmap.key] = inmap.value
   hash_store(db, inmap.table_key, map)
   outmap.num = "1"
   return kt.RVSUCCESS
end

function hget(inmap, outmap)
   local _, map = hash_load(inmap)
   if map[inmap.key] then outmap.value = map[inmap.key] end
   return kt.RVSUCCESS
end

function hdel(inmap, outmap)
   local db, map = hash_load(inmap)
   outmap.num = map[inmap.key] and "1" or "0"
   map[inmap.key] = nil
   hash_store(db, inmap.table_key, map)
   return kt.RVSUCCESS
end

function hlen(inmap, outmap)
   local _, map = hash_load(inmap)
   outmap.num = tostring(size(map))
   return kt.RVSUCCESS
end

function hcontains(inmap, outmap)
   local _, map = hash_load(inmap)
   outmap.num = map[inmap.key] and "1" or "0"
   return kt.RVSUCCESS
end

-- --- Set: a kt.mapdump record under "key", members as the map's keys ---------------
local function set_load(inmap) return load_record(inmap, "key", kt.mapload) end

function sadd(inmap, outmap)
   local db, map = set_load(inmap)
   local n = 0
   for _, v in pairs(others(inmap, "key")) do
      if not map[v] then map[v] = ""; n = n + 1 end
   end
   hash_store(db, inmap.key, map)
   outmap.num = tostring(n)
   return kt.RVSUCCESS
end

function srem(inmap, outmap)
   local db, map = set_load(inmap)
   local n = 0
   for _, v in pairs(others(inmap, "key")) do
      if map[v] then map[v] = nil; n = n + 1 end
   end
   hash_store(db, inmap.key, map)
   outmap.num = tostring(n)
   return kt.RVSUCCESS
end

function scard(inmap, outmap)
   local _, map = set_load(inmap)
   outmap.num = tostring(size(map))
   return kt.RVSUCCESS
end

function sismember(inmap, outmap)
   local _, map = set_load(inmap)
   outmap.num = map[inmap.value] and "1" or "0"
   return kt.RVSUCCESS
end

function smembers(inmap, outmap)
   local _, map = set_load(inmap)
   local i = 0
   for member in pairs(map) do outmap[tostring(i)] = member; i = i + 1 end
   return kt.RVSUCCESS
end

function spop(inmap, outmap)
   local db, map = set_load(inmap)
   local member = next(map)
   if member == nil then outmap.num = "0"; return kt.RVSUCCESS end
   map[member] = nil
   hash_store(db, inmap.key, map)
   outmap.num = "1"
   outmap.value = member
   return kt.RVSUCCESS
end

-- sinter / sunion / sdiff of the sets at "key" and "key2"; with "dest", also stored there
local function set_op(inmap, outmap, keep)
   local db, a = set_load(inmap)
   local _, b = load_record({db = inmap.db, key = inmap.key2}, "key", kt.mapload)
   local result, i = {}, 0
   for m in pairs(a) do if keep(true, b[m] ~= nil) then result[m] = "" end end
   for m in pairs(b) do if a[m] == nil and keep(false, true) then result[m] = "" end end
   for m in pairs(result) do outmap[tostring(i)] = m; i = i + 1 end
   if inmap.dest then store(db, inmap.dest, kt.mapdump(result)) end
   return kt.RVSUCCESS
end

function sinter(inmap, outmap) return set_op(inmap, outmap, function(in_a, in_b) return in_a and in_b end) end
function sunion(inmap, outmap) return set_op(inmap, outmap, function(in_a, in_b) return in_a or in_b end) end
function sdiff(inmap, outmap) return set_op(inmap, outmap, function(in_a, in_b) return in_a and not in_b end) end

-- --- List: a kt.arraydump record under "key" ----------------------------------------
local function list_load(inmap) return load_record(inmap, "key", kt.arrayload) end

local function list_store(db, key, list) store(db, key, kt.arraydump(list)) end

local function ordered(inmap)
   local values, i = {}, 0
   while inmap[tostring(i)] do values[#values + 1] = inmap[tostring(i)]; i = i + 1 end
   return values
end

function llpush(inmap, outmap)
   local db, list = list_load(inmap)
   table.insert(list, 1, inmap.value)
   list_store(db, inmap.key, list)
   outmap.length = tostring(#list)
   return kt.RVSUCCESS
end

function lrpush(inmap, outmap)
   local db, list = list_load(inmap)
   list[#list + 1] = inmap.value
   list_store(db, inmap.key, list)
   outmap.length = tostring(#list)
   return kt.RVSUCCESS
end

function lextend(inmap, outmap)
   local db, list = list_load(inmap)
   for _, v in ipairs(ordered(inmap)) do list[#list + 1] = v end
   list_store(db, inmap.key, list)
   outmap.length = tostring(#list)
   return kt.RVSUCCESS
end

function lrange(inmap, outmap)
   local _, list = list_load(inmap)
   local n = #list
   local start, stop = tonumber(inmap.start or 0), tonumber(inmap.stop or n)
   if start < 0 then start = math.max(start + n, 0) end
   if stop < 0 then stop = math.max(stop + n, 0) end
   if stop > n then stop = n end
   local j = 0
   for i = start + 1, stop do outmap[tostring(j)] = list[i]; j = j + 1 end
   return kt.RVSUCCESS
end

function lindex(inmap, outmap)
   local _, list = list_load(inmap)
   local i = position(inmap.index, #list, false)
   if i then outmap.value = list[i] end
   return kt.RVSUCCESS
end

function linsert(inmap, outmap)
   local db, list = list_load(inmap)
   local i = position(inmap.index, #list, true)
   if not i then return kt.RVSUCCESS end
   table.insert(list, i, inmap.value)
   list_store(db, inmap.key, list)
   outmap.length = tostring(#list)
   return kt.RVSUCCESS
end

function lrem(inmap, outmap)
   local db, list = list_load(inmap)
   local i = position(inmap.index, #list, false)
   if not i then return kt.RVSUCCESS end
   outmap.value = table.remove(list, i)
   list_store(db, inmap.key, list)
   return kt.RVSUCCESS
end

function lset(inmap, outmap)
   local db, list = list_load(inmap)
   local i = position(inmap.index, #list, false)
   if not i then return kt.RVSUCCESS end
   list[i] = inmap.value
   list_store(db, inmap.key, list)
   outmap.num = "1"
   return kt.RVSUCCESS
end

local function pop_at(inmap, outmap, first)
   local db, list = list_load(inmap)
   if #list == 0 then return kt.RVSUCCESS end
   outmap.value = table.remove(list, first and 1 or #list)
   list_store(db, inmap.key, list)
   return kt.RVSUCCESS
end

function llpop(inmap, outmap) return pop_at(inmap, outmap, true) end
function lrpop(inmap, outmap) return pop_at(inmap, outmap, false) end

function lremrange(inmap, outmap)
   local db, list = list_load(inmap)
   local n = #list
   local start, stop = tonumber(inmap.start or 0), tonumber(inmap.stop or n)
   if start < 0 then start = math.max(start + n, 0) end
   if stop < 0 then stop = math.max(stop + n, 0) end
   local kept = {}
   for i = 1, n do
      if i <= start or i > stop then kept[#kept + 1] = list[i] end
   end
   list_store(db, inmap.key, kept)
   outmap.length = tostring(#kept)
   return kt.RVSUCCESS
end

-- pop from one end of "key", push onto the other end of "dest" (the same list: a rotation)
local function poppush(inmap, outmap, from_head)
   local db, list = list_load(inmap)
   if #list == 0 then return kt.RVSUCCESS end
   local value = table.remove(list, from_head and 1 or #list)
   list_store(db, inmap.key, list)
   local _, dest = load_record({db = inmap.db, key = inmap.dest}, "key", kt.arrayload)
   if from_head then dest[#dest + 1] = value else table.insert(dest, 1, value) end
   list_store(db, inmap.dest, dest)
   outmap.value = value
   return kt.RVSUCCESS
end

function llpoprpush(inmap, outmap) return poppush(inmap, outmap, true) end
function lrpoplpush(inmap, outmap) return poppush(inmap, outmap, false) end

function llen(inmap, outmap)
   local _, list = list_load(inmap)
   outmap.num = tostring(#list)
   return kt.RVSUCCESS
end

local function find(inmap, outmap, from, to, step)
   local _, list = list_load(inmap)
   outmap.index = "-1"
   if from == nil then from, to = #list, 1 end
   for i = from, to or #list, step do
      if list[i] == inmap.value then outmap.index = tostring(i - 1); break end
   end
   return kt.RVSUCCESS
end

function lfind(inmap, outmap) return find(inmap, outmap, 1, nil, 1) end
function lrfind(inmap, outmap) return find(inmap, outmap, nil, nil, -1) end

-- --- Queue: a kt.arraydump of "score<TAB>item" in leaving order ----------------------
local function entry(e)
   local tab = string.find(e, "\t", 1, true)
   return tonumber(string.sub(e, 1, tab - 1)), string.sub(e, tab + 1)
end

-- put item in its place: after every entry of the same or a higher score
local function enqueue(list, score, item)
   local at = #list + 1
   for i = 1, #list do
      if entry(list[i]) < score then at = i; break end
   end
   table.insert(list, at, string.format("%d", score) .. "\t" .. item)
end

function queue_add(inmap, outmap)
   local db, list = list_load(inmap)
   local score = tonumber(inmap.score or 0)
   for _, item in ipairs(ordered(inmap)) do enqueue(list, score, item) end
   list_store(db, inmap.key, list)
   outmap.num = tostring(#list)
   return kt.RVSUCCESS
end

local function take(inmap, outmap, from_end, remove)
   local db, list = list_load(inmap)
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
   if remove and got > 0 then
      for i = 1, #list do
         if not taken[i] then kept[#kept + 1] = list[i] end
      end
      list_store(db, inmap.key, kept)
   end
   return kt.RVSUCCESS
end

function queue_pop(inmap, outmap) return take(inmap, outmap, false, true) end
function queue_rpop(inmap, outmap) return take(inmap, outmap, true, true) end
function queue_peek(inmap, outmap) return take(inmap, outmap, false, false) end
function queue_rpeek(inmap, outmap) return take(inmap, outmap, true, false) end

function queue_count(inmap, outmap)
   local _, list = list_load(inmap)
   outmap.num = tostring(#list)
   return kt.RVSUCCESS
end

-- the entries equal to inmap["0"] (up to "n", from the head or with "from_end" the tail) split from the others
local function matching(inmap, list)
   local limit, found, kept = tonumber(inmap.n or -1), {}, {}
   local first, last, step = 1, #list, 1
   if inmap.from_end then first, last, step = #list, 1, -1 end
   local hit = {}
   for i = first, last, step do
      local _, item = entry(list[i])
      if item == inmap["0"] and (limit < 0 or #found < limit) then hit[i] = true; found[#found + 1] = list[i] end
   end
   for i = 1, #list do if not hit[i] then kept[#kept + 1] = list[i] end end
   return found, kept
end

function queue_remove(inmap, outmap)
   local db, list = list_load(inmap)
   local found, kept = matching(inmap, list)
   list_store(db, inmap.key, kept)
   outmap.num = tostring(#found)
   return kt.RVSUCCESS
end

function queue_set_priority(inmap, outmap)
   local db, list = list_load(inmap)
   local found, kept = matching(inmap, list)
   for _, e in ipairs(found) do
      local _, item = entry(e)
      enqueue(kept, tonumber(inmap.score), item)
   end
   list_store(db, inmap.key, kept)
   outmap.num = tostring(#found)
   return kt.RVSUCCESS
end

-- move up to "n" entries from the head of "key" to "dest", keeping their scores
function queue_transfer(inmap, outmap)
   local db, list = list_load(inmap)
   local moved = {}
   for i = 1, math.min(tonumber(inmap.n or 1), #list) do moved[i] = table.remove(list, 1) end
   list_store(db, inmap.key, list)
   local _, dest = load_record({db = inmap.db, key = inmap.dest}, "key", kt.arrayload)
   for i, e in ipairs(moved) do
      local score, item = entry(e)
      enqueue(dest, score, item)
      outmap[tostring(i - 1)] = item
   end
   list_store(db, inmap.dest, dest)
   return kt.RVSUCCESS
end

function queue_clear(inmap, outmap)
   local db, list = list_load(inmap)
   db:remove(inmap.key)
   outmap.num = tostring(#list)
   return kt.RVSUCCESS
end

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

-- --- Schedule: the queue layout, in rising score order ------------------------------
function schedule_add(inmap, outmap)
   local db, list = list_load(inmap)
   local score = tonumber(inmap.score or 0)
   for _, item in ipairs(ordered(inmap)) do
      local at = #list + 1
      for i = 1, #list do
         if entry(list[i]) > score then at = i; break end
      end
      table.insert(list, at, string.format("%d", score) .. "\t" .. item)
   end
   list_store(db, inmap.key, list)
   outmap.num = tostring(#list)
   return kt.RVSUCCESS
end

-- the first "n" items (default all) whose score is at most "score" (default: any); "remove" takes them out
function schedule_read(inmap, outmap)
   local db, list = list_load(inmap)
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
   if inmap.remove then list_store(db, inmap.key, kept) end
   return kt.RVSUCCESS
end

function increment_double(inmap, outmap)
   local db = getdb(inmap)
   local n = db:increment_double(inmap.key, tonumber(inmap.num or 1), tonumber(inmap.orig or 0), xt_of(inmap))
   if n == nil then return kt.RVELOGIC end
   outmap.num = string.format("%.17g", n)
   return kt.RVSUCCESS
end

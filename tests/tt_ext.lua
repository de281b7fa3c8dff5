-- Lua functions for ttserver -ext, matching the protocol test server's (tests/protocol_tt_admin.py ext_function).
function echo(key, value)
   return value
end

function concat(key, value)
   return key .. value
end

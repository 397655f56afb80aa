-- Adds to each record the key `syslog_json`: the whole record as one line of
-- JSON. The syslog output sends only string fields it is told about, so
-- without this the Graph object (nested maps and arrays) would not reach
-- the SIEM at all; with it the SIEM's JSON parser sees the object as Graph
-- returned it (key order aside).
--
-- Needs `enable_flb_null: on` on the filter, else null values are dropped.
-- Fluent Bit marks each table with a metatable whose `type` is 1 for an
-- array and 2 for a map, which tells [] from {} when they are empty.

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function quote(s)
  local q = s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format('\\u%04x', c:byte())
  end)
  return '"' .. q .. '"'
end

local encode

local function encode_table(t, out)
  local mt = getmetatable(t)
  if mt ~= nil and mt.type == 1 then
    out[#out + 1] = '['
    for i = 1, #t do
      if i > 1 then out[#out + 1] = ',' end
      encode(t[i], out)
    end
    out[#out + 1] = ']'
    return
  end
  out[#out + 1] = '{'
  local first = true
  for k, v in pairs(t) do
    if not first then out[#out + 1] = ',' end
    first = false
    out[#out + 1] = quote(tostring(k))
    out[#out + 1] = ':'
    encode(v, out)
  end
  out[#out + 1] = '}'
end

encode = function(v, out)
  local t = type(v)
  if t == 'string' then
    out[#out + 1] = quote(v)
  elseif t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = 'null'
    elseif v == math.floor(v) and math.abs(v) < 2^53 then
      out[#out + 1] = string.format('%d', v)
    else
      out[#out + 1] = string.format('%.17g', v)
    end
  elseif t == 'boolean' then
    out[#out + 1] = v and 'true' or 'false'
  elseif t == 'table' then
    encode_table(v, out)
  else
    -- flb_null (a light userdata) and anything JSON cannot hold.
    out[#out + 1] = 'null'
  end
end

function record_to_json(tag, timestamp, record)
  local out = {}
  encode(record, out)
  record['syslog_json'] = table.concat(out)
  -- 2: the record changed, its timestamp (the event's time) did not.
  return 2, timestamp, record
end

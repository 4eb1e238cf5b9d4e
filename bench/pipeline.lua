-- wrk script: HTTP/1.1 pipelining. Every write carries DEPTH requests for the
-- URL's path (default 16, or the first script argument: `-- 8`), built once
-- in init() and returned from request(). wrk counts each response, so
-- Requests/sec is responses per second; its latency is per batch.
local depth = 16
local batch

init = function(args)
  depth = tonumber(args[1]) or depth
  local parts = {}
  for i = 1, depth do
    parts[i] = wrk.format()
  end
  batch = table.concat(parts)
end

request = function()
  return batch
end

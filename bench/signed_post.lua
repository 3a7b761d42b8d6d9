-- wrk script: POST pre-signed bodies in turn. Arguments after `--`: <path> <requests file>.
-- Each line of the requests file is `<hex signature>\t<body>`; signing happens in Python beforehand
-- because wrk's LuaJIT has no HMAC.
local requests = {}
local next_index = 0

function init(args)
  local path, file = args[1], args[2]
  for line in io.lines(file) do
    local signature, body = line:match("^(%x+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["X-Signature"] = signature,
      ["X-Event-Name"] = "order_created",
    }, body)
  end
end

function request()
  next_index = next_index + 1
  if next_index > #requests then
    next_index = 1
  end
  return requests[next_index]
end

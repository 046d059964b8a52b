-- grey.lua: one greylisting cycle over the bare milter protocol, driven by
-- OpenDKIM's miltertest (an MTA simulator independent of Postfix and of
-- go-milter). Run by TestMiltertestGreylistScenario:
--
--   miltertest -s grey.lua -D MILTER=inet:PORT@127.0.0.1 -D DELAY=2 \
--              -D FROM=unique@sender.test -D HOSTNAME=mx.e2e.test
--
-- For one (client IP, sender, recipient) triplet it asserts:
--   1. first RCPT          -> SMFIR_REPLYCODE (the custom 451 4.7.1 reply)
--   2. immediate retry     -> SMFIR_REPLYCODE again
--   3. retry after DELAY   -> RCPT continue, the whole message is accepted at
--                             end of message, with an added header
--                             "X-Greylist: delayed N seconds by milter-grey on HOSTNAME"
-- Lua cannot see the text of a custom reply; the Postfix tests check it.
-- CLIENT_IP (default 203.0.113.7) is only data inside the protocol.

local sock     = MILTER or error("define MILTER, e.g. -D MILTER=inet:7357@127.0.0.1", 0)
local delay    = tonumber(DELAY or "2")
local from     = FROM or error("define FROM: a sender unique to this run", 0)
local hostname = HOSTNAME or "mx.e2e.test"
local rcpt     = RCPT or "user@dest.test"
local ip       = CLIENT_IP or "203.0.113.7"
local helo     = "mail.sender.test"

local names = {
	[SMFIR_CONTINUE] = "continue", [SMFIR_ACCEPT] = "accept",
	[SMFIR_TEMPFAIL] = "tempfail", [SMFIR_REJECT] = "reject",
	[SMFIR_REPLYCODE] = "replycode", [SMFIR_DISCARD] = "discard",
}
local function rname(r) return names[r] or string.format("%q", tostring(r)) end

-- miltertest exits 1 on error() without printing the message; main runs
-- under pcall below, which prints it.
local function fail(msg) error(msg, 0) end

-- expect checks the reply to the step just sent against the wanted ones.
local function expect(conn, step, err, ...)
	if err ~= nil then fail(step .. ": miltertest: " .. tostring(err)) end
	local got = mt.getreply(conn)
	local wants = {}
	for _, want in ipairs({...}) do
		if got == want then
			mt.echo(string.format("ok   %-30s -> %s", step, rname(got)))
			return got
		end
		wants[#wants + 1] = rname(want)
	end
	fail(string.format("%s: got %s, want %s", step, rname(got), table.concat(wants, "|")))
end

-- envelope opens a session and sends it up to RCPT TO; it returns the
-- connection and the reply to RCPT. Macros as Postfix sends them.
local function envelope(label, ...)
	local conn = mt.connect(sock, 20, 0.25)
	if conn == nil then fail("cannot connect to the milter at " .. sock) end
	mt.macro(conn, SMFIC_CONNECT, "j", hostname, "{daemon_name}", hostname,
		"{client_addr}", ip, "{client_name}", helo)
	expect(conn, label .. " connect", mt.conninfo(conn, helo, ip), SMFIR_CONTINUE)
	expect(conn, label .. " helo", mt.helo(conn, helo), SMFIR_CONTINUE)
	mt.macro(conn, SMFIC_MAIL, "{mail_addr}", from)
	expect(conn, label .. " mail from", mt.mailfrom(conn, "<" .. from .. ">"), SMFIR_CONTINUE)
	mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", rcpt)
	local r = expect(conn, label .. " rcpt to", mt.rcptto(conn, "<" .. rcpt .. ">"), ...)
	return conn, r
end

local function main()
	mt.set_timeout(15)
	mt.echo(string.format("grey.lua: milter=%s delay=%ss triplet=(%s, %s, %s)", sock, delay, ip, from, rcpt))

	-- 1. A triplet never seen is greylisted with the custom 451 reply.
	local c1 = envelope("first attempt", SMFIR_REPLYCODE)
	mt.disconnect(c1)

	-- 2. A retry before the delay is greylisted again.
	local c2 = envelope("early retry", SMFIR_REPLYCODE)
	mt.disconnect(c2)

	-- 3. A retry after the delay passes, and the message goes through to
	-- the end, where the milter records the delay in a header.
	mt.sleep(delay + 0.5)
	local c3 = envelope("retry after delay", SMFIR_CONTINUE)
	expect(c3, "data", mt.data(c3), SMFIR_CONTINUE)
	expect(c3, "header From", mt.header(c3, "From", from), SMFIR_CONTINUE)
	expect(c3, "header Subject", mt.header(c3, "Subject", "grey.lua"), SMFIR_CONTINUE)
	expect(c3, "end of headers", mt.eoh(c3), SMFIR_CONTINUE)
	expect(c3, "body", mt.bodystring(c3, "hello from miltertest\r\n"), SMFIR_CONTINUE)
	expect(c3, "end of message", mt.eom(c3), SMFIR_ACCEPT, SMFIR_CONTINUE)
	if not (mt.eom_check(c3, MT_HDRADD, "X-Greylist") or mt.eom_check(c3, MT_HDRINSERT, "X-Greylist")) then
		fail("end of message: no X-Greylist header added")
	end
	local value = mt.getheader(c3, "X-Greylist", 0)
	local pattern = "^%s*delayed %d+ seconds? by milter%-grey on " .. hostname:gsub("%p", "%%%0")
	if value == nil or not string.find(value, pattern) then
		fail(string.format("X-Greylist: %q, want 'delayed N seconds by milter-grey on %s'", tostring(value), hostname))
	end
	mt.echo(string.format("ok   %-30s -> X-Greylist: %s", "added header", value))
	mt.disconnect(c3)
end

local ok, err = pcall(main)
if not ok then
	mt.echo("grey.lua: FAIL " .. tostring(err))
	error(err, 0)
end
mt.echo("grey.lua: PASS")

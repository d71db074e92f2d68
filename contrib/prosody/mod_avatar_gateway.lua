-- mod_avatar_gateway: the server-side hand of avatar-gateway (shipped in its contrib/prosody; README, "Legacy
-- clients see modern avatars").
--
-- An XEP-0008 client learns that a contact has an avatar, and which one, only from the contact's presence:
-- <x xmlns='jabber:x:avatar'><hash>SHA-1</hash></x> (XEP-0008 §3). Contacts on XEP-0084 or vCard clients never send
-- it, and a component cannot send presence on a user's behalf (XEP-0356 grants receiving presence only). So the
-- gateway tells this module the hash of the XEP-0008 rendition it serves for each account, and the module stamps it
-- on every available presence the account's sessions send: broadcast, directed, and the stored presence the server
-- answers probes with. The gateway answers the jabber:iq:avatar read of the bare JID with exactly those bytes.
--
-- Protocol (ARCHITECTURE.md, "The presence stamp"): the configured component sends the host
--   <iq type='set'><legacy-hash xmlns='urn:avatar-gateway:legacy-hash:0' jid='user@host'><hash>…</hash></legacy-hash></iq>
-- where no <hash/> means "no avatar"; the module answers an empty result. From anyone else: forbidden. The
-- namespace is announced in the host's disco#info, which is how the gateway learns that the module is loaded.
--
-- What is stamped, per user:
--   * a hash the gateway sent: <x xmlns='jabber:x:avatar'><hash>…</hash></x>;
--   * "no avatar" from the gateway: <x xmlns='jabber:x:avatar'/>, XEP-0008's form for a disabled avatar;
--   * nothing heard from the gateway: nothing (a presence without the element tells readers to keep their cache).
-- The gateway learns of an avatar published with XEP-0084 from a PEP notification, but Prosody sends it none (the
-- component is in nobody's roster) and presence may not follow the publication. So when a user changes the avatar
-- metadata node (publish, retract, purge, delete), the module sends the gateway the notification a subscriber
-- would get: the node's last item as it is now (XEP-0060 §7.1.2), or a purge when no item is left. The gateway reads
-- the image with its own privileged IQ, as for any notification, and tells the module the new hash.
--
-- A presence that carries a jabber:x:avatar element of the client's own is left as the client wrote it: an XEP-0008
-- client serves its own image from its full JID (XEP-0008 §3), and the gateway reads that hash from the presence to
-- convert the avatar, so overwriting it would hide the client's change from both. Only an element this module put
-- there (recognised by identity: the very table it inserted, as found in the session's stored presence) is replaced
-- when stale.
--
-- Works unchanged on Prosody 0.12 and 13. The differences that matter here:
--   * 13 moved the libraries under "prosody." (require "prosody.util.stanza"); its loader.lua still resolves the old
--     names, which are the only ones 0.12 knows, so the old names are used.
--   * 13's mod_presence stops processing a presence whose session went away while it was reflected; a presence
--     re-sent here for a session that is closing is then dropped there, which is what should happen.
--   * Both fire pre-presence/{full,bare,host} for stanzas from local sessions before routing them (core/
--     stanza_router.lua), keep the last available presence in session.presence (what probes are answered with,
--     mod_presence), and have the same keyval storage and iq-set/host/<ns>:<name> events.

local st = require "util.stanza";
local jid = require "util.jid";
local cache = require "util.cache";
local usermanager = require "core.usermanager";

local xmlns_legacy_hash = "urn:avatar-gateway:legacy-hash:0";
local xmlns_x_avatar = "jabber:x:avatar";
local xmlns_delay = "urn:xmpp:delay";
local xmlns_pubsub = "http://jabber.org/protocol/pubsub";
local xmlns_pubsub_owner = "http://jabber.org/protocol/pubsub#owner";
local xmlns_pubsub_event = "http://jabber.org/protocol/pubsub#event";
local avatar_metadata = "urn:xmpp:avatar:metadata";

local core_post_stanza = prosody.core_post_stanza;
local bare_sessions = prosody.bare_sessions;

-- The component JID of the gateway, the only sender whose hashes are taken.
local component = jid.prep(module:get_option_string("avatar_gateway_component"));
if not component then
	module:log("error", "avatar_gateway_component is not set: every hash update will be refused");
end

-- user → { hash = "…" } or { none = true } (no avatar: an empty record would be deleted by the storage drivers);
-- kept so that a restart of Prosody or of the gateway loses nothing.
local store = module:open_store("avatar_gateway");
local mod_pep = module:depends("pep");
-- Records read from the store, so a presence costs no storage read; a user the gateway never named is cached too.
local UNKNOWN = {};
local records = cache.new(module:get_option_number("avatar_gateway_cache_size", 10000));

module:add_feature(xmlns_legacy_hash);

local function record(username)
	local rec = records:get(username);
	if rec == nil then
		local stored, err = store:get(username);
		if err then
			module:log("error", "Reading the avatar hash of %s failed: %s", username, err);
			return UNKNOWN; -- not cached: read again next time
		end
		rec = stored or UNKNOWN;
		records:set(username, rec);
	end
	return rec;
end

-- pre-presence/*: runs before mod_presence routes the stanza (priority 0) and so before mod_privilege forwards it to
-- the gateway (presence/bare): every recipient, the gateway included, sees the stamped presence.
local function stamp(event)
	local origin, stanza = event.origin, event.stanza;
	if stanza.attr.type ~= nil or origin.type ~= "c2s" or not origin.username then return; end
	local x = stanza:get_child("x", xmlns_x_avatar);
	if x and x ~= origin.avatar_gateway_x then return; end -- the client's own element (see the top)
	local rec = record(origin.username);
	if rec == UNKNOWN then return; end
	if x and x:get_child_text("hash") == rec.hash then return; end -- already current
	stanza:remove_children("x", xmlns_x_avatar);
	local stamped = st.stanza("x", { xmlns = xmlns_x_avatar });
	if rec.hash then stamped:text_tag("hash", rec.hash); end
	stanza:add_direct_child(stamped);
	origin.avatar_gateway_x = stamped;
end

module:hook("pre-presence/full", stamp, 1);
module:hook("pre-presence/bare", stamp, 1);
module:hook("pre-presence/host", stamp, 1);

-- After a change, each session's current presence goes out again (to contacts, the user's other resources and the
-- gateway, as a presence the client sent would), stamped anew on the way, so legacy contacts fetch at once.
-- Sessions whose presence carries the client's own XEP-0008 element are left alone: the change is not theirs.
local function resend(username)
	local user = bare_sessions[username .. "@" .. module.host];
	if not user then return; end
	for _, session in pairs(user.sessions) do
		local current = session.presence;
		local x = current and current:get_child("x", xmlns_x_avatar);
		if current and (not x or x == session.avatar_gateway_x) then
			local again = st.clone(current);
			-- mod_presence added a delay to what it stored (XEP-0203) and adds a fresh one to what it stores next.
			again:remove_children("delay", xmlns_delay);
			again:remove_children("x", xmlns_x_avatar);
			core_post_stanza(session, again, true);
		end
	end
end

local function is_sha1_hex(text)
	return #text == 40 and text:match("^%x+$") ~= nil;
end

module:hook("iq-set/host/" .. xmlns_legacy_hash .. ":legacy-hash", function(event)
	local origin, stanza = event.origin, event.stanza;
	-- The server stamps and checks `from` (RFC 6120 §8.1.2.1): a user cannot appear as the component's domain JID.
	if component == nil or jid.prep(stanza.attr.from) ~= component then
		module:log("warn", "Refused a legacy avatar hash from %s: only %s may set them", stanza.attr.from, component);
		origin.send(st.error_reply(stanza, "auth", "forbidden", "Only the avatar gateway sets legacy avatar hashes"));
		return true;
	end
	local update = stanza.tags[1];
	local username, host, resource = jid.split(jid.prep(update.attr.jid));
	if not username or host ~= module.host or resource then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "jid must be the bare JID of a user of this host"));
		return true;
	end
	if not usermanager.user_exists(username, host) then
		origin.send(st.error_reply(stanza, "cancel", "item-not-found", "No such user"));
		return true;
	end
	local hash = update:get_child_text("hash");
	if hash then
		hash = hash:lower(); -- XEP-0008 §3 says only "hexadecimal"; one case, so a repeat is recognised
		if not is_sha1_hex(hash) then
			origin.send(st.error_reply(stanza, "modify", "bad-request", "hash must be a SHA-1 in hex"));
			return true;
		end
	end
	local old = record(username);
	if old ~= UNKNOWN and old.hash == hash then
		origin.send(st.reply(stanza)); -- the gateway resends every hash after it reconnects: nothing changes
		return true;
	end
	local rec = hash and { hash = hash } or { none = true };
	local ok, err = store:set(username, rec);
	if not ok then
		module:log("error", "Storing the avatar hash of %s failed: %s", username, err);
		origin.send(st.error_reply(stanza, "wait", "internal-server-error", "Storage failed"));
		return true;
	end
	records:set(username, rec);
	module:log("debug", "Legacy avatar hash of %s@%s is now %s", username, host, hash or "none");
	origin.send(st.reply(stanza));
	resend(username);
	return true;
end);

-- The avatar metadata node as it is now, to the gateway: its last item, or a purge when there is none.
local function notify_gateway(username)
	local service = mod_pep.get_pep_service(username);
	local ok, id, item = service:get_last_item(avatar_metadata, true);
	local message = st.message({ from = username .. "@" .. module.host, to = component, type = "headline" })
		:tag("event", { xmlns = xmlns_pubsub_event });
	if ok and id and item then
		item = st.clone(item);
		item.attr.xmlns = nil; -- from the pubsub namespace into the event's, as mod_pep does
		message:tag("items", { node = avatar_metadata }):add_child(item):up();
	else
		message:tag("purge", { node = avatar_metadata }):up();
	end
	module:send(message);
end

-- Before mod_pep (priority 0) handles a user's IQ on its own PEP service; the notification is read once that IQ is
-- done (a timer of 0 s runs after the current stanza). The gateway's own privileged writes come this way too (as
-- the user, through mod_privilege); it knows its own hashes again.
local function watch_pep(event)
	local origin, stanza = event.origin, event.stanza;
	if component == nil or stanza.attr.type ~= "set" then return; end
	local username = origin.username;
	if stanza.attr.to then
		local node, host, resource = jid.split(stanza.attr.to);
		if node ~= username or host ~= module.host or resource then return; end
	end
	if not username or origin.host ~= module.host then return; end
	local op = stanza.tags[1] and stanza.tags[1].tags[1];
	if op and op.attr.node == avatar_metadata then
		module:add_timer(0, function() notify_gateway(username); end);
	end
end

module:hook("iq/bare/" .. xmlns_pubsub .. ":pubsub", watch_pep, 1);
module:hook("iq/bare/" .. xmlns_pubsub_owner .. ":pubsub", watch_pep, 1);
